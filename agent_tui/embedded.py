"""The backend embedded in the TUI: the Agent API in a child process, on a private socket.

``agent-tui`` with no flags runs the whole Agent API on this machine, owned by
the app, so the TUI can use the very same ``AgentClient`` as in remote mode.
The backend runs in a process of its own (``agent_tui.embedded_child``): its
imports and the anthropic SDK's (seconds of CPU) then load on another core
instead of holding the GIL the UI needs, so the app draws at once and the
backend is ready in about the time its imports take. ``spawn()`` starts it
early (before Textual has even loaded); ``start()`` waits until it answers.

It listens on a Unix socket inside a fresh 0700 directory (only this user can
connect), or, where there are no Unix sockets, on a random loopback port;
either way requests need the local admin key, which is provisioned on first
run and kept in the 0600 config file. It stops when the app closes its stdin,
or when the app is gone.

``httpx.ASGITransport`` (in-process) is not an option: it buffers a whole
response before returning it, so an SSE stream would never arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agent_tui.embedded_child import (
    EMBEDDED_KEY_NAME,
    EMBEDDED_KEY_SCOPES,
    EMBEDDED_USER_ID,
    GRACEFUL_SHUTDOWN_SECONDS,
    STARTUP_TIMEOUT,
    settings_to_json,
)
from backend.settings import Settings

LOG_FILENAME = "agent-tui.log"  # as agent_tui.app's; not imported from there (it is the UI)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

__all__ = [
    "EMBEDDED_BASE_URL",
    "EMBEDDED_KEY_NAME",
    "EMBEDDED_KEY_SCOPES",
    "EMBEDDED_USER_ID",
    "EmbeddedBackend",
    "EmbeddedStartError",
]

EMBEDDED_BASE_URL = "http://agent-tui"


class EmbeddedStartError(RuntimeError):
    """The embedded backend could not start; the message says why."""


class EmbeddedBackend:
    """The Agent API served by a child process this object owns.

    ``spawn()`` starts the process (cheap, synchronous, may be called before
    any event loop runs); ``start()`` spawns it if needed, waits until it is
    ready and returns what ``AgentClient`` needs (base URL, key, transport);
    ``stop()`` shuts it down gracefully. ``start_seconds`` is how long
    ``start()`` waited; ``timings`` holds the backend's own figures.
    """

    def __init__(self, settings: Settings, *, unix_socket: bool | None = None) -> None:
        """``unix_socket``: None picks a Unix socket where the platform has them, else
        a random loopback port (reachable by other local users, so only the key
        protects it)."""
        self.settings = settings
        self.unix_socket = hasattr(socket, "AF_UNIX") if unix_socket is None else unix_socket
        self.start_seconds: float | None = None
        # From the spawn: "load", "startup", "total" (in the backend), "ready" (seen here).
        self.timings: dict[str, float] = {}
        self.socket_path: Path | None = None
        self._runtime_dir: Path | None = None
        self._listener: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._spawned_at = 0.0
        self._ready = False
        self._lock_file: IO[str] | None = None

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()`` while the process lives."""
        return self._ready and self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The backend process's id, once spawned."""
        return self._process.pid if self._process is not None else None

    def spawn(self) -> None:
        """Start the backend's process now, without waiting for it. Raises
        ``EmbeddedStartError`` when another agent-tui owns the data directory."""
        if self._process is not None:
            return
        if self._lock_file is None:  # a restart keeps the lock it holds
            self._lock_data_dir()
        spec: dict[str, Any] = {"settings": settings_to_json(self.settings)}
        pass_fds: tuple[int, ...] = ()
        try:
            # A restart serves on the same socket, so the client's transport reconnects.
            if self.unix_socket:
                if self._runtime_dir is None:
                    self._runtime_dir = Path(tempfile.mkdtemp(prefix="agent-tui-"))  # mode 0700
                    self.socket_path = self._runtime_dir / "api.sock"
                spec["uds"] = str(self.socket_path)
            else:
                if self._listener is None:
                    # IPPROTO_TCP: uvicorn turns Nagle off only on sockets that name it.
                    self._listener = socket.socket(
                        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
                    )
                    self._listener.bind(("127.0.0.1", 0))
                spec["fd"] = self._listener.fileno()
                pass_fds = (self._listener.fileno(),)
            self._spawned_at = time.perf_counter()
            # It logs to agent-tui.log; what escapes logging (a crash) goes there too.
            with open(self.settings.data_dir / LOG_FILENAME, "ab") as stderr:
                self._process = subprocess.Popen(
                    # -P: not the current directory first on sys.path, where a
                    # project of the user's may have its own `backend` package.
                    [sys.executable, "-P", "-m", "agent_tui.embedded_child"],
                    env=_child_environment(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,  # never the terminal: it is the app's
                    pass_fds=pass_fds,
                    start_new_session=True,  # terminal signals are for the app, which stops it
                )
            assert self._process.stdin is not None
            # The settings hold the model's key: a pipe, never argv or the environment.
            self._process.stdin.write(json.dumps(spec).encode() + b"\n")
            self._process.stdin.flush()
        except BaseException:
            self._cleanup()
            raise

    async def start(self) -> tuple[str, str, httpx.AsyncBaseTransport]:
        """Wait until the backend is ready; return ``(base_url, api_key, transport)``."""
        if self._ready:
            raise RuntimeError("EmbeddedBackend.start() was already called")
        began = time.perf_counter()
        self.spawn()
        process = self._process
        assert process is not None and process.stdout is not None
        client_ready = asyncio.create_task(asyncio.to_thread(self._load_client))
        try:
            line = await asyncio.wait_for(
                asyncio.to_thread(process.stdout.readline), STARTUP_TIMEOUT + 10
            )
        except TimeoutError:
            client_ready.cancel()
            await self.stop()
            raise EmbeddedStartError(
                f"The embedded backend did not start within {STARTUP_TIMEOUT:g} s"
            ) from None
        except BaseException:
            client_ready.cancel()
            await self.stop()
            raise
        answer = _parse_answer(line)
        if not answer.get("ok"):
            client_ready.cancel()
            await self.stop()
            reason = answer.get("error") or (
                f"its process exited with code {process.returncode}; see agent-tui.log in "
                f"{self.settings.data_dir}"
            )
            raise EmbeddedStartError(f"The embedded backend failed to start: {reason}")
        transport = await client_ready
        self._ready = True
        self.timings.update(answer.get("timings") or {})
        self.timings["ready"] = time.perf_counter() - self._spawned_at
        self.start_seconds = time.perf_counter() - began
        if self.unix_socket:
            base_url = EMBEDDED_BASE_URL
        else:
            assert self._listener is not None
            base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        log.info(
            "embedded backend ready %.3f s after its spawn (waited %.3f s)",
            self.timings["ready"],
            self.start_seconds,
        )
        return base_url, str(answer["apiKey"]), transport

    @property
    def exit_code(self) -> int | None:
        """The process's exit code once it has ended (died, or stopped); else None."""
        return self._process.poll() if self._process is not None else None

    async def restart(self) -> None:
        """Start a new backend in place of one whose process died, on the same socket
        and data (so with the same key): a client built from ``start()``'s answer
        reconnects by itself. Raises ``EmbeddedStartError`` like ``start()``."""
        process = self._process
        if process is None or process.poll() is None:
            raise RuntimeError("restart() is for a backend whose process has ended")
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._process = None
        self._ready = False
        await self.start()

    async def stop(self) -> None:
        """Shut the backend down gracefully and remove its socket. Safe to call twice."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.close()  # the backend's signal to stop
            try:
                await asyncio.to_thread(process.wait, GRACEFUL_SHUTDOWN_SECONDS + 10)
            except subprocess.TimeoutExpired:
                log.warning("embedded backend did not stop in time; killing it")
                process.kill()
                await asyncio.to_thread(process.wait)
        self._ready = False
        self._cleanup()

    # ---- internals

    def _load_client(self) -> httpx.AsyncBaseTransport:
        """Import the client (httpx) and build its transport, off the UI's loop."""
        import httpx

        import agent_tui.client  # noqa: F401  (the app's next import)

        return httpx.AsyncHTTPTransport(uds=str(self.socket_path) if self.unix_socket else None)

    def _lock_data_dir(self) -> None:
        """One embedded backend per data directory: two would each own actors of
        the same sessions in one SQLite file."""
        import fcntl

        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        lock_file = open(data_dir / "embedded.lock", "a+")  # held until stop()
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise EmbeddedStartError(
                f"Another agent-tui is already running on {data_dir}. Close it first, "
                "or connect to one backend from both with `agent-tui serve` and --remote."
            ) from None
        self._lock_file = lock_file

    def _cleanup(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            if process.poll() is None:
                process.kill()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None


def _child_environment() -> dict[str, str]:
    """This environment, with this copy of agent-tui first on the child's path."""
    root = str(Path(__file__).resolve().parent.parent)  # holds agent_tui, backend, sandbox
    path = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _parse_answer(line: bytes) -> dict[str, Any]:
    if not line:
        return {"ok": False}
    try:
        answer = json.loads(line)
    except ValueError:
        return {"ok": False, "error": line.decode(errors="replace").strip()[:500]}
    return answer if isinstance(answer, dict) else {"ok": False}
