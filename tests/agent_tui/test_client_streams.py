"""Stream edge cases of the client against a tiny scripted HTTP server.

The real server cannot be told to stall mid-stream or to send a malformed body on
cue, so these cases use a raw asyncio server that answers each connection from a
script. Everything else is tested against the real backend in test_client.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from agent_tui.client import AgentApiError, AgentClient, ConnectionState
from agent_tui.client.session import file_url_path
from backend.events import Event, resync_frame

SID = "7d8e1c8e-3f4a-4b59-9f57-1f0c2f3b9a10"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ScriptedServer:
    """Answers the n-th request with the n-th handler (the last one repeats)."""

    handlers: list[Handler]
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, path, headers, body)
                self.requests.append(request)
                handler = self.handlers[min(len(self.requests) - 1, len(self.handlers) - 1)]
                await handler(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def event(seq: int, type_: str = "message.assistant", **data: object) -> Event:
    return Event(
        type=type_, seq=seq, session_id=SID, timestamp="2026-01-01T00:00:00.000Z", data=data
    )


def sse_head(writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )


def chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def json_answer(status: int, body: object, *, content_type: str = "application/json") -> Handler:
    async def handle(request: Request, writer: asyncio.StreamWriter) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            f"content-length: {len(raw)}\r\n\r\n".encode()
            + raw
        )
        await writer.drain()

    return handle


def stream(*frames: bytes, then: str = "close", gap: float = 0.0) -> Handler:
    """An SSE answer with these frames, then ``close`` (end cleanly), ``drop``
    (cut the connection mid-body) or ``stall`` (send nothing more, keep it open)."""

    async def handle(request: Request, writer: asyncio.StreamWriter) -> None:
        sse_head(writer)
        for frame in frames:
            chunk(writer, frame)
            await writer.drain()
            if gap:
                await asyncio.sleep(gap)
        if then == "close":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        elif then == "drop":
            writer.transport.abort()
        else:
            await asyncio.sleep(3600)

    return handle


SESSION = {
    "id": SID,
    "status": "idle",
    "title": None,
    "repo": None,
    "model": "m",
    "createdAt": "2026-01-01T00:00:00.000Z",
    "lastActivityAt": "2026-01-01T00:00:00.000Z",
    "sandbox": {"provider": "local", "state": "ready", "id": None},
    "usage": {"inputTokens": 0, "outputTokens": 0, "sandboxSeconds": 0, "messages": 0},
    "lastEventId": 0,
}


async def take(iterator: AsyncIterator[Event], n: int, within: float = 5.0) -> list[Event]:
    out: list[Event] = []

    async def run() -> None:
        async for item in iterator:
            out.append(item)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), within)
    return out


async def test_heartbeat_watchdog_reconnects_a_silent_stream_from_the_last_id() -> None:
    handlers = [
        stream(event(1).frame(), event(2).frame(), then="stall"),
        stream(event(3).frame(), then="stall"),
    ]
    states: list[ConnectionState] = []
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        follower = client.session(SID).follow_events(
            after=0, heartbeat_timeout=0.3, on_state=states.append
        )
        started = asyncio.get_running_loop().time()
        events = await take(follower, 3)
        elapsed = asyncio.get_running_loop().time() - started
        await follower.aclose()  # type: ignore[attr-defined]
    assert [e.seq for e in events] == [1, 2, 3]
    assert server.requests[0].headers["last-event-id"] == "0"
    assert server.requests[1].headers["last-event-id"] == "2"
    assert 0.3 <= elapsed < 2.0
    assert states == [
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.CLOSED,
    ]


async def test_keepalive_comments_keep_a_quiet_stream_alive() -> None:
    keepalives = [b": keepalive\n\n"] * 6
    handlers = [stream(*keepalives, event(1).frame(), gap=0.1, then="stall")]
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        follower = client.session(SID).follow_events(after=0, heartbeat_timeout=0.35)
        events = await take(follower, 1)
        await follower.aclose()  # type: ignore[attr-defined]
    assert [e.seq for e in events] == [1]
    assert len(server.requests) == 1  # 0.6 s of comments, never a 0.35 s silence


async def test_resync_and_replayed_overlap_never_repeat_an_event() -> None:
    handlers = [
        stream(event(1).frame(), event(2).frame(), resync_frame(2)),
        # The server replays from its own idea of the position: 2 again must be skipped.
        stream(event(2).frame(), event(3).frame(), then="drop"),
        stream(event(3).frame(), event(4).frame(), then="stall"),
    ]
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        follower = client.session(SID).follow_events(after=0)
        events = await take(follower, 4)
        await follower.aclose()  # type: ignore[attr-defined]
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert [r.headers["last-event-id"] for r in server.requests] == ["0", "2", "3"]


async def test_follow_without_after_starts_from_the_sessions_last_event_id() -> None:
    handlers = [
        json_answer(200, {**SESSION, "lastEventId": 41}),
        stream(event(42).frame(), then="stall"),
    ]
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        follower = client.session(SID).follow_events()
        events = await take(follower, 1)
        await follower.aclose()  # type: ignore[attr-defined]
    assert [e.seq for e in events] == [42]
    assert server.requests[1].headers["last-event-id"] == "41"


async def test_follow_backs_off_on_server_errors_and_raises_on_404() -> None:
    error = {"error": {"code": "SESSION_NOT_FOUND", "message": "Session not found", "details": {}}}
    handlers = [
        json_answer(
            503, {"error": {"code": "SERVICE_UNAVAILABLE", "message": "db", "details": {}}}
        ),
        json_answer(502, b"<html>bad gateway</html>", content_type="text/html"),
        json_answer(404, error),
    ]
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(AgentApiError) as caught:
            await take(client.session(SID).follow_events(after=0), 1)
        elapsed = asyncio.get_running_loop().time() - started
    assert caught.value.code == "SESSION_NOT_FOUND" and caught.value.status == 404
    assert len(server.requests) == 3
    assert 0.2 + 0.4 <= elapsed < 2.0  # two backoff waits: 0.2 s, then 0.4 s


async def test_a_turn_whose_stream_drops_is_finished_from_the_event_log() -> None:
    handlers = [
        stream(event(5, "session.running").frame(), event(6).frame(), then="drop"),
        stream(event(6).frame(), event(7, "session.idle").frame(), then="stall"),
    ]
    seen: list[int] = []
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        events = await client.session(SID).send_message("hi", on_event=lambda e: seen.append(e.seq))
    assert [e.seq for e in events] == seen == [5, 6, 7]
    assert server.requests[0].method == "POST"
    assert json.loads(server.requests[0].body) == {"content": "hi"}
    assert server.requests[1].path == f"/v1/sessions/{SID}/events"
    assert server.requests[1].headers["last-event-id"] == "6"


async def test_a_turn_stream_that_drops_before_any_event_is_a_connection_error() -> None:
    async with (
        ScriptedServer([stream(then="drop")]) as server,
        AgentClient(server.url, "k") as client,
    ):
        with pytest.raises(AgentApiError) as caught:
            await client.session(SID).send_message("hi")
    assert caught.value.code == "CONNECTION_ERROR" and caught.value.status == 0


async def test_a_turn_that_ends_at_an_error_event_does_not_wait_for_more() -> None:
    handlers = [stream(event(1, "error", code="MODEL_ERROR", message="x").frame())]
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        events = await client.session(SID).send_message("hi")
    assert [e.type for e in events] == ["error"]
    assert len(server.requests) == 1


async def test_error_bodies_become_agent_api_errors() -> None:
    handlers = [
        json_answer(
            409,
            {
                "error": {
                    "code": "SESSION_BUSY",
                    "message": "busy",
                    "details": {"status": "running"},
                }
            },
        ),
        json_answer(502, b"<html>Bad Gateway</html>", content_type="text/html"),
        json_answer(
            401, {"error": {"code": "INVALID_API_KEY", "message": "Unknown API key", "details": {}}}
        ),
        json_answer(200, b"not json", content_type="text/plain"),
    ]
    async with ScriptedServer(handlers) as server, AgentClient(server.url, "k") as client:
        with pytest.raises(AgentApiError) as busy:
            await client.session(SID).send_message("hi")
        with pytest.raises(AgentApiError) as gateway:
            await client.get_session(SID)
        with pytest.raises(AgentApiError) as unauthorized:
            await client.list_keys()
        with pytest.raises(AgentApiError) as garbage:
            await client.get_session(SID)
    assert (busy.value.code, busy.value.status, busy.value.details) == (
        "SESSION_BUSY",
        409,
        {"status": "running"},
    )
    assert (gateway.value.code, gateway.value.status) == ("HTTP_502", 502)
    assert "Bad Gateway" in gateway.value.message
    assert unauthorized.value.code == "INVALID_API_KEY"
    assert "Check the API key" in unauthorized.value.message
    assert garbage.value.code == "INVALID_RESPONSE"


async def test_connection_refused_names_the_url() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    url = f"http://127.0.0.1:{port}"
    async with AgentClient(url, "k") as client:
        with pytest.raises(AgentApiError) as caught:
            await client.health()
    assert caught.value.code == "CONNECTION_ERROR" and caught.value.status == 0
    assert url in caught.value.message and "running" in caught.value.message


def test_file_paths_keep_dot_segments_for_the_server_to_judge() -> None:
    assert file_url_path("/", directory=True) == ""
    assert file_url_path("src", directory=True) == "src/"
    assert file_url_path("/src/a b.py", directory=False) == "src/a%20b.py"
    assert file_url_path("../etc/passwd", directory=False) == "%2E%2E/etc/passwd"
