"""The OpenCode client's SSE splitting (``sse_data``), chunk boundaries anywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.agent.opencode.client import sse_data

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
