"""Fixtures for the agent loop: the fake Anthropic server, the real SDK pointed
at it, a subprocess sandbox in a temporary directory, and a recording observer."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic import AsyncAnthropic

from backend.agent.loop import AgentLoop
from backend.agent.types import TurnResult
from backend.records import ToolCall
from backend.settings import Settings
from sandbox.base import (
    ExecResult,
    FileEntry,
    FileNotFound,
    IsADirectory,
    NotADirectory,
    OutputCallback,
    SandboxPathError,
    normalize_relative_path,
)
from tests.fakes.fake_anthropic import FakeAnthropic


def _cut(data: bytes, limit: int) -> tuple[str, bool]:
    if len(data) <= limit:
        return data.decode(errors="replace"), False
    half = limit // 2
    note = f"\n[... {len(data) - 2 * half} bytes omitted ...]\n".encode()
    return (data[:half] + note + data[-half:]).decode(errors="replace"), True


class TmpSandbox:
    """A minimal ``Sandbox``: bash subprocesses and plain file I/O in a directory.

    Just enough of the protocol's behaviour for the agent tests (workspace-relative
    paths, escapes refused, the process group killed on timeout and on cancel);
    the real providers live in ``sandbox/``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.commands: list[str] = []

    @property
    def id(self) -> str:
        return self.root.name

    def _path(self, path: str) -> Path:
        target = (self.root / normalize_relative_path(path)).resolve()
        if not target.is_relative_to(self.root):
            raise SandboxPathError(details={"path": path})
        return target

    async def exec(
        self,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109 (the Sandbox protocol's signature)
        on_output: OutputCallback | None = None,
        max_output_bytes: int = 30_000,
    ) -> ExecResult:
        self.commands.append(command)
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            cwd=self.root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

        def kill() -> None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            kill()
            await process.wait()
            return ExecResult(exit_code=-1, stdout="", stderr="", timed_out=True)
        except asyncio.CancelledError:
            kill()
            raise
        out, cut_out = _cut(stdout, max_output_bytes)
        err, cut_err = _cut(stderr, max_output_bytes)
        code = process.returncode if process.returncode is not None else -1
        return ExecResult(code, out, err, truncated=cut_out or cut_err)

    async def read_file(self, path: str) -> bytes:
        target = self._path(path)
        if target.is_dir():
            raise IsADirectory(details={"path": path})
        if not target.exists():
            raise FileNotFound(details={"path": path})
        return await asyncio.to_thread(target.read_bytes)

    async def write_file(self, path: str, data: bytes) -> None:
        target = self._path(path)
        if target.is_dir():
            raise IsADirectory(details={"path": path})
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_bytes, data)

    async def list_dir(self, path: str) -> list[FileEntry]:
        target = self._path(path)
        if not target.exists():
            raise FileNotFound(details={"path": path})
        if not target.is_dir():
            raise NotADirectory(details={"path": path})
        return [
            FileEntry(
                name=p.name,
                path=str(p.relative_to(self.root)),
                is_directory=p.is_dir(),
                size=0 if p.is_dir() else p.stat().st_size,
            )
            for p in sorted(target.iterdir(), key=lambda p: p.name)
        ]

    async def is_alive(self) -> bool:
        return True


class RecordingObserver:
    """A ``TurnObserver`` that keeps every callback, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.steps: list[TurnResult] = []
        self.first_delta = asyncio.Event()
        self.tool_started = asyncio.Event()

    async def on_text_delta(self, text: str) -> None:
        self.events.append(("delta", text))
        self.first_delta.set()

    async def on_text_done(self, text: str) -> None:
        self.events.append(("done", text))

    async def on_tool_call(self, call: ToolCall) -> None:
        self.events.append(("call", call.id, call.name, dict(call.arguments)))
        self.tool_started.set()

    async def on_tool_result(self, call: ToolCall) -> None:
        self.events.append(("result", call.id, call.result, call.is_error))

    async def on_step(self, result: TurnResult) -> None:
        self.events.append(("step", result.stop_reason))
        self.steps.append(result)

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]

    def deltas(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "delta"]


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeAnthropic]:
    # One server for the session: starting and stopping uvicorn costs ~0.2 s a test.
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> FakeAnthropic:
    fake_server.reset()
    return fake_server


@pytest.fixture
def settings(fake: FakeAnthropic) -> Settings:
    return Settings(
        anthropic_api_key="test",
        anthropic_base_url=fake.url,
        anthropic_model="claude-test",
        anthropic_max_tokens=1024,
        max_tool_rounds=5,
        shell_timeout_seconds=10,
        tool_output_max_bytes=4000,
    )


@pytest.fixture
async def client(fake: FakeAnthropic) -> AsyncIterator[AsyncAnthropic]:
    sdk = AsyncAnthropic(api_key="test", base_url=fake.url, max_retries=2)
    yield sdk
    await sdk.close()


@pytest.fixture
def agent(settings: Settings, client: AsyncAnthropic) -> AgentLoop:
    return AgentLoop(settings, client)


@pytest.fixture
def sandbox(tmp_path: Path) -> TmpSandbox:
    return TmpSandbox(tmp_path / "workspace")


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()
