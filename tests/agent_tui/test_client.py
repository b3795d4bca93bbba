"""The client against a real ``agent-tui serve`` subprocess and the fake Anthropic server.

One server per module (starting it costs about a second); each test makes its own
sessions. Connection drops for the reconnect test come from a TCP proxy in the
test that can cut every connection passing through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agent_tui.client import AgentApiError, AgentClient, ConnectionState, SessionHandle
from backend.events import Event
from tests.fakes.fake_anthropic import FakeAnthropic, reply

REPO = Path(__file__).resolve().parents[2]
AGENT_TUI = str(Path(sys.executable).with_name("agent-tui"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bwrap_works() -> bool:
    try:
        from sandbox.local import bwrap_available

        return bool(bwrap_available())
    except ImportError:
        return shutil.which("bwrap") is not None


@dataclass
class Server:
    url: str
    admin_key: str  # user "default", scopes sessions + admin
    other_key: str  # user "other"
    env: dict[str, str]
    process: subprocess.Popen[bytes]


def create_key_with_cli(env: dict[str, str], *args: str) -> dict[str, object]:
    out = subprocess.run(
        [AGENT_TUI, "keys", "create", "--json", *args],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeAnthropic) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": str(root / "agent.db"),
        "AGENT_TUI_DATA_DIR": str(root / "data"),
        "AGENT_TUI_CONFIG_DIR": str(root / "config"),
        "ANTHROPIC_BASE_URL": fake_model.url,
        "ANTHROPIC_API_KEY": "test",
        "AGENT_TUI_LOG_LEVEL": "warning",
        # Many tests, one user: the contract's defaults (10 sessions / 60 s) would trip.
        "RATE_LIMIT_CREATE_SESSION": "1000/60",
        "RATE_LIMIT_DEFAULT": "10000/60",
        "MAX_ACTIVE_SESSIONS": "1000",
    }
    if not bwrap_works():
        env["AGENT_TUI_UNSAFE_LOCAL_SANDBOX"] = "true"
    admin = create_key_with_cli(env, "--name", "t", "--scope", "admin")
    other = create_key_with_cli(env, "--name", "o", "--user", "other")
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [AGENT_TUI, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"agent-tui serve did not start:\n{(root / 'server.log').read_text()}"
            )
        time.sleep(0.05)
    server = Server(url, str(admin["key"]), str(other["key"]), env, process)
    try:
        yield server
    finally:
        # server.process, not process: a test may have restarted the server.
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
        log.close()


@pytest.fixture
async def client(server: Server) -> AgentClient:
    async with AgentClient(server.url, server.admin_key) as c:
        yield c  # type: ignore[misc]


@pytest.fixture
async def ready(client: AgentClient) -> SessionHandle:
    """A started session, deleted after the test."""
    session = await client.create_session(title="test")
    await session.wait_until_ready(30)
    yield session  # type: ignore[misc]
    with contextlib.suppress(AgentApiError):
        await session.delete()


def final_text(events: list[Event]) -> str:
    complete = [e for e in events if e.type == "message.complete"]
    return str(complete[-1].data["content"]) if complete else ""


# ---- health, errors, keys


async def test_health_and_rate_limit_headers(client: AgentClient) -> None:
    health = await client.health()
    assert health["status"] == "ok"
    assert client.last_rate_limit is None  # /health is not a /v1 route
    await client.list_sessions(limit=1)
    info = client.last_rate_limit
    assert info is not None and info.limit == 10000 and 0 <= info.remaining < info.limit
    assert info.reset > time.time() - 1


async def test_bad_key_is_401_with_a_hint(server: Server) -> None:
    async with AgentClient(server.url, "aa_live_" + "x" * 32) as bad:
        with pytest.raises(AgentApiError) as caught:
            await bad.list_sessions()
    error = caught.value
    assert (error.code, error.status) == ("INVALID_API_KEY", 401)
    assert "API key" in error.message and "AGENT_TUI_API_KEY" in error.message
    assert error.request_id


async def test_connection_refused_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AgentClient(url, "k") as nowhere:
        with pytest.raises(AgentApiError) as caught:
            await nowhere.get_session(str(uuid.uuid4()))
    assert (caught.value.code, caught.value.status) == ("CONNECTION_ERROR", 0)
    assert url in caught.value.message


async def test_keys_create_list_revoke(client: AgentClient, server: Server) -> None:
    created = await client.create_key("ci", scopes=["sessions"], environment="test")
    assert created.key.startswith("aa_test_") and created.scopes == ["sessions"]
    assert created.key.endswith(created.last4)
    listed = {k.id: k for k in await client.list_keys()}
    assert created.id in listed and listed[created.id].revoked_at is None
    assert not hasattr(listed[created.id], "key")

    async with AgentClient(server.url, created.key) as limited:
        assert isinstance(await limited.list_keys(), list)
        with pytest.raises(AgentApiError) as forbidden:
            await limited.create_key("nope")
        assert (forbidden.value.code, forbidden.value.status) == ("FORBIDDEN", 403)

        await client.revoke_key(created.id)
        await client.revoke_key(created.id)  # idempotent
        assert {k.id: k for k in await client.list_keys()}[created.id].revoked_at is not None
        await asyncio.sleep(0)  # the verifier cache is evicted on revocation in this process
        with pytest.raises(AgentApiError) as revoked:
            await limited.list_sessions()
        assert (revoked.value.code, revoked.value.status) == ("INVALID_API_KEY", 401)

    with pytest.raises(AgentApiError) as missing:
        await client.revoke_key(str(uuid.uuid4()))
    assert missing.value.status == 404


async def test_validation_error_carries_details(client: AgentClient) -> None:
    with pytest.raises(AgentApiError) as caught:
        await client.create_session(repo="not a repo")
    assert (caught.value.code, caught.value.status) == ("VALIDATION_ERROR", 400)
    with pytest.raises(AgentApiError) as bad_id:
        await client.get_session("not-a-uuid")
    assert bad_id.value.status == 400


# ---- sessions


async def test_create_wait_get_rename_list(client: AgentClient) -> None:
    session = await client.create_session(title="first")
    assert session.info is not None and session.info.status in ("starting", "idle")
    info = await session.wait_until_ready(30)
    assert info.status == "idle" and info.title == "first"
    assert (await client.get_session(session.id)).id == session.id

    renamed = await session.rename("renamed")
    assert renamed.title == "renamed" and session.info is renamed

    second = await client.create_session(title="second")
    page, cursor = await client.list_sessions(limit=1)
    assert [s.id for s in page] == [second.id] and cursor is not None
    page2, _ = await client.list_sessions(limit=1, cursor=cursor)
    assert [s.id for s in page2] == [session.id]
    idle = (await client.list_sessions(status="idle", limit=100))[0]
    assert all(s.status == "idle" for s in idle)
    for handle in (session, second):
        await handle.delete()


async def test_list_models_and_set_model(client: AgentClient) -> None:
    listing = await client.list_models()
    assert listing.source == "endpoint" and "claude-haiku-4-5" in [m.id for m in listing.models]
    session = await client.create_session(title="models")
    await session.wait_until_ready(30)
    info = await session.set_model("claude-haiku-4-5")
    assert info.model == "claude-haiku-4-5" and session.info is info
    info = await session.update(permission_mode="ask", thinking=True)
    assert (info.model, info.permission_mode, info.thinking) == ("claude-haiku-4-5", "ask", True)
    assert (await session.compact()).compacted is False  # nothing to compact yet
    await session.delete()


async def test_create_with_progress_events(client: AgentClient) -> None:
    seen: list[Event] = []

    async def on_event(event: Event) -> None:
        seen.append(event)

    session = await client.create_session(title="progress", on_event=on_event)
    types = [e.type for e in seen]
    assert types[0] == "session.created" and types[-1] == "session.ready"
    assert all(t == "session.progress" for t in types[1:-1])
    assert all(e.session_id == session.id for e in seen)
    assert session.info is not None and session.info.status == "idle"
    await session.delete()


async def test_other_users_session_is_404(
    client: AgentClient, ready: SessionHandle, server: Server
) -> None:
    async with AgentClient(server.url, server.other_key) as other:
        for call in (
            other.get_session(ready.id),
            other.session(ready.id).send_message("hi"),
            other.session(ready.id).list_files("/"),
        ):
            with pytest.raises(AgentApiError) as caught:
                await call
            assert (caught.value.code, caught.value.status) == ("SESSION_NOT_FOUND", 404)
        with pytest.raises(AgentApiError) as follow:
            async for _ in other.session(ready.id).follow_events(after=0):
                pass
        assert follow.value.status == 404
        assert await other.list_sessions() == ([], None)


# ---- turns


async def test_send_message_with_callback(client: AgentClient, ready: SessionHandle) -> None:
    seen: list[Event] = []
    events = await ready.send_message("hello there", on_event=seen.append)
    assert events == seen
    types = [e.type for e in events]
    assert types[-1] == "session.idle"
    assert "message.user" in types and "message.complete" in types
    assert final_text(events) == "You said: hello there"
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # partial text has seqs too
    partial = "".join(e.data["content"] for e in events if e.is_partial)
    assert partial == "You said: hello there"

    messages = await ready.messages()
    assert [(m.role, m.content) for m in messages][-2:] == [
        ("user", "hello there"),
        ("assistant", "You said: hello there"),
    ]
    assert [m.id for m in await ready.messages(limit=1)] == [messages[-1].id]


async def test_stream_message_as_iterator(client: AgentClient, ready: SessionHandle) -> None:
    types = [event.type async for event in ready.stream_message("iterate")]
    assert types[-1] == "session.idle" and "message.complete" in types


async def test_failed_turn_ends_with_error_then_idle(
    client: AgentClient, ready: SessionHandle, fake_model: FakeAnthropic
) -> None:
    fake_model.enqueue(reply().http_error(400, message="bad request from the fake"))
    events = await ready.send_message("fail please")
    types = [e.type for e in events]
    assert "error" in types and types[-1] == "session.idle"
    assert (await ready.refresh()).status == "idle"


async def test_busy_then_interrupt(
    client: AgentClient, ready: SessionHandle, fake_model: FakeAnthropic
) -> None:
    # hang(after_deltas=2): the fake's default hang() never fires (its 1 << 30 is never reached).
    fake_model.enqueue(
        reply().text("thinking hard", chunks=["thinking ", "hard"]).hang(after_deltas=2)
    )
    first_text = asyncio.Event()
    turn: list[Event] = []

    async def run_turn() -> None:
        async for event in ready.stream_message("take your time"):
            turn.append(event)
            if event.is_partial:
                first_text.set()

    task = asyncio.create_task(run_turn())
    await asyncio.wait_for(first_text.wait(), 15)
    with pytest.raises(AgentApiError) as busy:
        await ready.send_message("me too")
    assert (busy.value.code, busy.value.status) == ("SESSION_BUSY", 409)
    assert busy.value.details.get("status") == "running"

    await ready.interrupt()
    await asyncio.wait_for(task, 15)
    complete = [e for e in turn if e.type == "message.complete"]
    assert complete and complete[-1].data["stopReason"] == "interrupted"
    assert turn[-1].type == "session.idle"
    await ready.interrupt()  # idle: still fine


# ---- files, logs, usage


async def test_files_logs_and_usage(
    client: AgentClient, ready: SessionHandle, fake_model: FakeAnthropic
) -> None:
    fake_model.enqueue(
        reply()
        .tool_use("write_file", {"path": "src/hello.py", "content": "print('héllo')\n"})
        .tool_use("write_file", {"path": "data.bin", "content": "x"}),
        reply().text("Written.").stop("end_turn"),
    )
    events = await ready.send_message("write the files")
    assert final_text(events) == "Written."

    root = {f.name: f for f in await ready.list_files("/")}
    assert root["src"].is_directory and not root["data.bin"].is_directory
    assert [f.path for f in await ready.list_files("src")] == ["src/hello.py"]
    assert await ready.read_file("src/hello.py") == "print('héllo')\n".encode()
    assert await ready.read_text("/src/hello.py") == "print('héllo')\n"

    with pytest.raises(AgentApiError) as escape:
        await ready.read_file("../../etc/passwd")
    assert (escape.value.code, escape.value.status) == ("VALIDATION_ERROR", 400)
    with pytest.raises(AgentApiError) as escape_dir:
        await ready.list_files("../")
    assert escape_dir.value.status == 400
    with pytest.raises(AgentApiError) as missing:
        await ready.read_file("nope.txt")
    assert (missing.value.code, missing.value.status) == ("FILE_NOT_FOUND", 404)

    logs = await ready.logs(tail=50)
    assert isinstance(logs, list) and all(isinstance(line, str) for line in logs)

    usage = await client.usage(session_id=ready.id)
    assert usage.by_type.get("tokens.input", 0) > 0
    assert usage.by_type.get("message.sent", 0) >= 1
    assert all(day.event_type for day in usage.by_day)
    everything = await client.usage()
    assert everything.by_type["tokens.input"] >= usage.by_type["tokens.input"]


# ---- lifecycle


async def test_pause_resume_delete(client: AgentClient, ready: SessionHandle) -> None:
    paused = await ready.pause()
    assert paused.status == "paused"
    resumed = await ready.resume()
    assert resumed.status == "idle"

    await ready.delete()
    assert ready.info is not None and ready.info.status == "terminated"
    assert (await ready.refresh()).status == "terminated"
    await ready.delete()  # idempotent
    with pytest.raises(AgentApiError) as gone:
        await ready.send_message("hello?")
    assert (gone.value.code, gone.value.status) == ("SESSION_TERMINATED", 409)
    with pytest.raises(AgentApiError) as waiting:
        await ready.wait_until_ready(1)
    assert waiting.value.code == "SESSION_TERMINATED"
    assert len(await ready.messages()) >= 0  # history stays readable


# ---- follow_events with reconnects


class CuttingProxy:
    """A TCP proxy that can cut every connection passing through it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.transports: list[asyncio.WriteTransport] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()

    def cut(self) -> None:
        for transport in self.transports:
            transport.abort()
        self.transports.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.transports += [writer.transport, up_writer.transport]  # type: ignore[list-item]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_follow_events_survives_cut_connections(
    client: AgentClient, ready: SessionHandle, server: Server, fake_model: FakeAnthropic
) -> None:
    words = [f"w{i} " for i in range(40)]
    fake_model.enqueue(reply().text("".join(words), chunks=words).delay(0.05))
    start = (await ready.refresh()).last_event_id
    port = int(server.url.rsplit(":", 1)[1])
    states: list[ConnectionState] = []

    async with CuttingProxy(port) as proxy, AgentClient(proxy.url, server.admin_key) as via_proxy:
        followed: list[Event] = []

        async def follow() -> None:
            # aclosing: leaving the loop closes the stream now (and reports CLOSED),
            # not whenever the generator is collected.
            events = via_proxy.session(ready.id).follow_events(after=start, on_state=states.append)
            async with contextlib.aclosing(events):
                async for event in events:
                    followed.append(event)
                    if event.type == "session.idle":
                        return

        follower = asyncio.create_task(follow())
        turn = asyncio.create_task(ready.send_message("talk slowly"))
        for _ in range(3):
            await asyncio.sleep(0.5)
            proxy.cut()
        turn_events = await asyncio.wait_for(turn, 30)
        await asyncio.wait_for(follower, 30)

    seqs = [e.seq for e in followed]
    assert seqs == list(range(start + 1, start + 1 + len(seqs)))  # each once, in order, no gap
    # Replayed events are the same events (timestamps may be re-rendered from the store).
    by_seq = {e.seq: (e.type, e.data) for e in followed}
    assert all(by_seq[e.seq] == (e.type, e.data) for e in turn_events)
    assert "".join(e.data["content"] for e in followed if e.is_partial) == "".join(words)
    assert proxy.connections >= 3
    assert states.count(ConnectionState.RECONNECTING) >= 2
    assert states[0] == ConnectionState.CONNECTED and states[-1] == ConnectionState.CLOSED


def restart(server: Server) -> None:
    """Stop the server process and start a new one on the same port and database."""
    server.process.terminate()
    server.process.wait(15)
    server.process = subprocess.Popen(
        [AGENT_TUI, "serve", "--port", server.url.rsplit(":", 1)[1]],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )


async def test_follow_events_after_a_server_restart(server: Server) -> None:
    """A follower rides out the whole server going away and coming back."""
    async with AgentClient(server.url, server.admin_key) as client:
        session = await client.create_session(title="restart")
        await session.wait_until_ready(30)
        first = await session.send_message("before")
        start = first[0].seq - 1
        followed: list[Event] = []
        states: list[ConnectionState] = []
        caught_up = asyncio.Event()

        async def follow() -> None:
            async for event in session.follow_events(after=start, on_state=states.append):
                followed.append(event)
                if len(followed) == len(first):
                    caught_up.set()
                if event.type == "session.idle" and event.seq > first[-1].seq:
                    return

        task = asyncio.create_task(follow())
        await asyncio.wait_for(caught_up.wait(), 15)
        await asyncio.to_thread(restart, server)
        deadline = time.monotonic() + 30
        while ConnectionState.CONNECTED not in states[1:]:
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.05)
        second = await session.send_message("after")
        await asyncio.wait_for(task, 30)

    got = [(e.seq, e.type) for e in followed]
    assert got[: len(first)] == [(e.seq, e.type) for e in first]
    assert got[len(first) :] == [(e.seq, e.type) for e in second]
    assert len(set(got)) == len(got)
