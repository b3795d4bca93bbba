"""The OpenCode client's event stream: SSE splitting (``sse_data``, chunk
boundaries anywhere) and one subscription kept across turns (``turn_events``),
against a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from backend.agent.opencode.client import OpenCodeClient, sse_data

STREAM = (
    b": a comment\n"
    b"event: message\n"
    b'data: {"type":"server.connected"}\n'
    b"\n"
    b'data: {"a":\r\n'
    b"data:1}\r\n"
    b"id: 7\r\n"
    b"\r\n"
    b"retry: 10\r"
    b'data: {"b":2}\r'
    b"\r"
    b"\n"
    b"data: unfinished"
)
EXPECTED = [b'{"type":"server.connected"}', b'{"a":\n1}', b'{"b":2}']


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64, 4096])
async def test_sse_data_splits_events_whatever_the_chunks(size: int) -> None:
    assert [d async for d in sse_data(_chunks(STREAM, size))] == EXPECTED


class _EventServer:
    """A real HTTP server with OpenCode's ``GET /event`` shape: ``server.connected``
    first, then what the test publishes; counts the subscriptions."""

    def __init__(self) -> None:
        self.connections = 0
        self.streams: list[asyncio.Queue[dict[str, Any] | None]] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http" and scope["path"] == "/event"
        self.connections += 1
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.streams.append(queue)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        event: dict[str, Any] | None = {"type": "server.connected", "properties": {}}
        while event is not None:
            body = f"data: {json.dumps(event)}\n\n".encode()
            await send({"type": "http.response.body", "body": body, "more_body": True})
            event = await queue.get()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def publish(self, event: dict[str, Any] | None) -> None:
        """To the latest subscription (None ends its stream)."""
        await self.streams[-1].put(event)


@pytest.fixture
async def event_server() -> AsyncIterator[tuple[_EventServer, str]]:
    server = _EventServer()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(server.app, log_config=None, lifespan="off", interface="asgi3")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve([sock]))
    async with asyncio.timeout(30):  # bounded: a server that never starts fails here
        while not uv.started:
            assert not task.done(), "the event server did not start"
            await asyncio.sleep(0.01)
    yield server, f"http://127.0.0.1:{sock.getsockname()[1]}"
    for stream in server.streams:
        stream.put_nowait(None)  # the server waits for its responses to end
    uv.should_exit = True
    async with asyncio.timeout(30):
        await task


def _ev(n: int) -> dict[str, Any]:
    return {"type": "n", "properties": {"n": n}}


async def test_turns_share_one_subscription_until_it_ends(
    event_server: tuple[_EventServer, str],
) -> None:
    server, url = event_server
    client = OpenCodeClient(url, None)
    try:
        async with asyncio.timeout(60):
            first = client.turn_events()
            assert (await anext(first))["type"] == "server.connected"
            await server.publish(_ev(1))
            assert await anext(first) == _ev(1)
            await first.aclose()
            second = client.turn_events()
            assert (await anext(second))["type"] == "server.connected"
            await server.publish(_ev(3))
            assert await anext(second) == _ev(3)
            assert server.connections == 1
            # The stream ends during a turn: the turn's events end; the next turn
            # subscribes again.
            await server.publish(None)
            assert [e async for e in second] == []
            third = client.turn_events()
            assert (await anext(third))["type"] == "server.connected"
            await server.publish(_ev(4))
            assert await anext(third) == _ev(4)
            assert server.connections == 2
            await third.aclose()
    finally:
        await client.aclose()


async def test_a_cancelled_read_leaves_the_turn_reading(
    event_server: tuple[_EventServer, str],
) -> None:
    """An interrupted turn reads on after the cancel (the abort's last events are
    its own, not the next turn's)."""
    server, url = event_server
    client = OpenCodeClient(url, None)
    try:
        async with asyncio.timeout(60):
            turn = client.turn_events()
            assert (await anext(turn))["type"] == "server.connected"
            waiting = asyncio.create_task(anext(turn))
            await asyncio.sleep(0)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await server.publish(_ev(1))
            assert await anext(turn) == _ev(1)
            await turn.aclose()
            with pytest.raises(StopAsyncIteration):
                await anext(turn)
    finally:
        await client.aclose()
