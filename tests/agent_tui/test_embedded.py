"""The embedded backend: uvicorn in the test's own event loop, reached over its Unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_tui.app.connection import EmbeddedConnection
from agent_tui.client import AgentApiError, AgentClient, Event
from agent_tui.config import config_path, load_config
from agent_tui.embedded import LOG_FILENAME, EmbeddedBackend, EmbeddedStartError
from agent_tui.embedded_child import GRACEFUL_SHUTDOWN_SECONDS
from backend.settings import Settings
from tests.fakes.fake_anthropic import FakeAnthropic, reply


def bwrap_works() -> bool:
    try:
        from sandbox.local import bwrap_available

        return bool(bwrap_available())
    except ImportError:
        return shutil.which("bwrap") is not None


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, fake_model: FakeAnthropic) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        anthropic_api_key="test",
        anthropic_base_url=fake_model.url,
        unsafe_local_sandbox=not bwrap_works(),
    )


async def test_start_serves_the_api_on_a_private_socket(
    settings: Settings, fake_model: FakeAnthropic
) -> None:
    sigint, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    backend = EmbeddedBackend(settings)
    base_url, api_key, transport = await backend.start()
    try:
        assert backend.start_seconds is not None and backend.start_seconds < 10
        print(f"\nEmbeddedBackend.start(): {backend.start_seconds:.3f} s")
        assert backend.socket_path is not None and backend.socket_path.exists()
        assert stat.S_IMODE(backend.socket_path.parent.stat().st_mode) == 0o700
        # uvicorn must leave signal handling to the host app (Textual).
        assert signal.getsignal(signal.SIGINT) is sigint
        assert signal.getsignal(signal.SIGTERM) is sigterm

        path = config_path(settings)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["embedded"]["apiKey"] == api_key

        words = [f"w{i} " for i in range(5)]
        fake_model.enqueue(reply().text("".join(words), chunks=words).delay(0.2))
        async with AgentClient(base_url, api_key, transport=transport) as client:
            assert (await client.health())["status"] == "ok"
            keys = await client.list_keys()
            assert [(k.name, k.user_id, sorted(k.scopes)) for k in keys] == [
                ("embedded", "local", ["admin", "sessions"])
            ]
            session = await client.create_session(title="embedded")
            await session.wait_until_ready(30)

            loop = asyncio.get_running_loop()
            arrivals: list[tuple[float, Event]] = []
            await session.send_message("hi", on_event=lambda e: arrivals.append((loop.time(), e)))
            partial_times = [t for t, e in arrivals if e.is_partial]
            # Streamed, not buffered: the fragments arrive spread over the ~1 s turn.
            assert len(partial_times) == 5 and partial_times[-1] - partial_times[0] > 0.5
            assert arrivals[-1][1].type == "session.idle"
            await session.delete()
    finally:
        await backend.stop()
    assert not backend.running
    assert not backend.socket_path.parent.exists()


async def test_second_start_reuses_the_key_and_a_revoked_one_is_replaced(
    settings: Settings,
) -> None:
    first = EmbeddedBackend(settings)
    _, key1, transport1 = await first.start()
    async with AgentClient("http://agent-tui", key1, transport=transport1) as client:
        key_id = (await client.list_keys())[0].id
    await first.stop()

    second = EmbeddedBackend(settings)
    _, key2, transport2 = await second.start()
    assert key2 == key1
    async with AgentClient("http://agent-tui", key2, transport=transport2) as client:
        await client.revoke_key(key_id)
    await second.stop()

    third = EmbeddedBackend(settings)
    _, key3, transport3 = await third.start()
    try:
        assert key3 != key1
        assert load_config(settings).embedded_api_key == key3
        assert stat.S_IMODE(config_path(settings).stat().st_mode) == 0o600
        async with AgentClient("http://agent-tui", key3, transport=transport3) as client:
            assert len(await client.list_keys()) == 2
    finally:
        await third.stop()


async def test_stop_does_not_hang_on_an_open_event_stream(settings: Settings) -> None:
    backend = EmbeddedBackend(settings)
    base_url, api_key, transport = await backend.start()
    client = AgentClient(base_url, api_key, transport=transport)
    session = await client.create_session()
    follower = session.follow_events(after=0)
    first = await asyncio.wait_for(anext(follower), 10)
    assert first.type == "session.created"

    loop = asyncio.get_running_loop()
    began = loop.time()
    await backend.stop()
    stop_seconds = loop.time() - began
    # The server ends open event streams at shutdown: uvicorn never waits out its
    # graceful timeout for them (it says so in the log when it does). No wall-clock
    # bound tighter than a hang: a loaded machine stops slowly without hanging.
    log_text = (settings.data_dir / LOG_FILENAME).read_text()
    assert "timeout graceful shutdown exceeded" not in log_text
    assert stop_seconds < GRACEFUL_SHUTDOWN_SECONDS + 10, stop_seconds
    await follower.aclose()  # type: ignore[attr-defined]
    await client.aclose()


async def test_a_failed_start_raises_and_leaves_the_loop_running(
    settings: Settings, tmp_path: Path
) -> None:
    broken = settings.replace(database_url=str(tmp_path))  # a directory is no SQLite file
    backend = EmbeddedBackend(broken)
    with pytest.raises(EmbeddedStartError, match="failed to start"):
        await backend.start()
    assert not backend.running
    await asyncio.sleep(0)  # still alive: uvicorn's sys.exit did not escape the task


async def test_loopback_port_where_there_are_no_unix_sockets(settings: Settings) -> None:
    backend = EmbeddedBackend(settings, unix_socket=False)
    base_url, api_key, transport = await backend.start()
    try:
        assert base_url.startswith("http://127.0.0.1:") and backend.socket_path is None
        async with AgentClient(base_url, api_key, transport=transport) as client:
            assert [k.name for k in await client.list_keys()] == ["embedded"]
        async with AgentClient(base_url, "aa_live_" + "x" * 32) as stranger:
            with pytest.raises(AgentApiError) as caught:
                await stranger.list_sessions()
            assert caught.value.status == 401
    finally:
        await backend.stop()


async def test_a_second_embedded_backend_on_the_same_data_dir_is_refused(
    settings: Settings,
) -> None:
    first = EmbeddedBackend(settings)
    await first.start()
    try:
        second = EmbeddedBackend(settings)
        with pytest.raises(EmbeddedStartError, match="already running"):
            await second.start()
    finally:
        await first.stop()
    # Released on stop: the next one starts.
    third = EmbeddedBackend(settings)
    await third.start()
    await third.stop()


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in state  # exited, waiting to be reaped


def test_the_backend_process_ends_when_the_app_is_killed(settings: Settings) -> None:
    """No orphan backend (holding sandboxes and the data dir) when the app dies hard."""
    from agent_tui.embedded_child import settings_to_json

    app = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, json, sys\n"
            "from agent_tui.embedded import EmbeddedBackend\n"
            "from agent_tui.embedded_child import settings_from_json\n"
            "backend = EmbeddedBackend(settings_from_json(json.loads(sys.argv[1])))\n"
            "async def main():\n"
            "    await backend.start()\n"
            "    print(backend.pid, flush=True)\n"
            "    await asyncio.sleep(3600)\n"
            "asyncio.run(main())\n",
            json.dumps(settings_to_json(settings)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert app.stdout is not None
        pid = int(app.stdout.readline())
        assert not _gone(pid)
        app.kill()
        app.wait(10)
        deadline = time.monotonic() + 20
        while not _gone(pid):
            assert time.monotonic() < deadline, "the backend outlived the app"
            time.sleep(0.05)
    finally:
        app.kill()


async def test_a_backend_package_in_the_current_directory_is_not_imported(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agent-tui` run inside a project with a `backend/` package of its own."""
    project = tmp_path / "project"
    (project / "backend").mkdir(parents=True)
    (project / "backend" / "__init__.py").write_text("raise SystemExit('the wrong backend')\n")
    monkeypatch.chdir(project)
    backend = EmbeddedBackend(settings)
    try:
        base_url, api_key, transport = await backend.start()
        async with AgentClient(base_url, api_key, transport=transport) as client:
            assert (await client.health())["status"] == "ok"
    finally:
        await backend.stop()


def test_settings_reach_the_backend_process_unchanged(settings: Settings) -> None:
    from agent_tui.embedded_child import settings_from_json, settings_to_json
    from backend.settings import RateLimit

    custom = settings.replace(
        rate_limit_default=RateLimit(5, 7),
        local_sandbox_network=None,
        anthropic_models=("claude-a", "claude-b"),
    )
    wire = json.loads(json.dumps(settings_to_json(custom)))
    assert settings_from_json(wire) == custom


async def test_a_backend_that_dies_is_started_again_and_the_client_reconnects(
    settings: Settings,
) -> None:
    """A crash (here SIGKILL) of the embedded backend's process: the connection starts
    a new one on the same socket, and the client it gave the app works again, with
    the same key and the same sessions."""
    connection = EmbeddedConnection(settings)
    notices: list[tuple[str, str]] = []
    connection.on_notice = lambda text, severity: notices.append((severity, text))
    try:
        client = await connection.open()
        session = await client.create_session()
        assert connection.backend is not None and connection.backend.pid is not None
        first_pid = connection.backend.pid
        os.kill(first_pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                listed, _ = await client.list_sessions()
                break
            except (AgentApiError, OSError):
                assert time.monotonic() < deadline, notices
                await asyncio.sleep(0.2)
        assert connection.backend.pid != first_pid
        assert session.id in [s.id for s in listed]
        assert any("stopped (exit code -9)" in text for _, text in notices), notices
        assert any("is back" in text for _, text in notices), notices
    finally:
        await connection.close()
    assert connection.backend is None
