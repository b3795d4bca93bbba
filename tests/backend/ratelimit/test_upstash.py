"""UpstashRateLimiter: key layout, deadlines, and failures turned into RateLimiterUnavailable."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import redis

from backend.errors import RateLimiterUnavailable
from backend.ratelimit.upstash import UPSTASH_CONNECTIONS, UpstashRateLimiter
from tests.conftest import REDIS_HOST, REDIS_PORT
from tests.fakes.tcp_proxy import TcpProxy
from tests.fakes.upstash_shim import slow_url

TOKEN = "test-token-that-must-not-leak-3f9a7c"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A bare TCP server on a random loopback port; yields its http:// URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def read_request_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}


async def answer(writer: asyncio.StreamWriter, status: str, content_type: str, body: bytes) -> None:
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    writer.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def expect_unavailable(limiter: UpstashRateLimiter) -> tuple[RateLimiterUnavailable, float]:
    """The error ``hit`` raises, and how long it took to come."""
    started = time.perf_counter()
    with pytest.raises(RateLimiterUnavailable) as caught:
        await limiter.hit("alice", limit=5, window_seconds=60)
    return caught.value, time.perf_counter() - started


async def test_keys_live_under_the_prefix(upstash_limiter: UpstashRateLimiter, redis_prefix: str):
    result = await upstash_limiter.hit("alice", limit=5, window_seconds=60)

    window = int(result.reset) // 60 - 1
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{redis_prefix}*"))
        ttl_ms = client.pttl(f"{redis_prefix}:alice:{window}")
    finally:
        client.close()
    assert keys == [f"{redis_prefix}:alice:{window}"]
    # upstash-ratelimit keeps a window two windows and a second, then Redis drops it.
    assert 120_000 < ttl_ms <= 121_000


async def test_unreachable_store_is_unavailable_at_once() -> None:
    limiter = UpstashRateLimiter(f"http://127.0.0.1:{closed_port()}", TOKEN, "p", 1.0)
    try:
        error, elapsed = await expect_unavailable(limiter)
    finally:
        await limiter.close()
    assert elapsed < 1.0
    assert "ConnectError" in str(error)


async def test_store_that_never_answers_is_cut_at_the_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and hangs up

    async with raw_server(silent) as url:
        limiter = UpstashRateLimiter(url, TOKEN, "p", 0.3)
        try:
            error, elapsed = await expect_unavailable(limiter)
        finally:
            await limiter.close()
    assert 0.3 <= elapsed < 0.8
    assert "did not answer within 0.3 s" in str(error)


async def test_slow_store_is_cut_at_the_timeout(upstash_shim: tuple[str, str]) -> None:
    url, token = upstash_shim
    limiter = UpstashRateLimiter(slow_url(url, 2), token, "p", 0.3)
    try:
        _, elapsed = await expect_unavailable(limiter)
    finally:
        await limiter.close()
    assert 0.3 <= elapsed < 0.8


async def test_wrong_token_is_unavailable(upstash_shim: tuple[str, str]) -> None:
    url, _ = upstash_shim
    limiter = UpstashRateLimiter(url, TOKEN, "p", 2.0)
    try:
        error, _ = await expect_unavailable(limiter)
    finally:
        await limiter.close()
    assert "Unauthorized" in str(error)


async def test_non_json_answer_is_unavailable() -> None:
    async def proxy_error(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_headers(reader)
        await answer(writer, "502 Bad Gateway", "text/html", b"<h1>Bad gateway</h1>")

    async with raw_server(proxy_error) as url:
        limiter = UpstashRateLimiter(url, TOKEN, "p", 2.0)
        try:
            error, _ = await expect_unavailable(limiter)
        finally:
            await limiter.close()
    assert "JSONDecodeError" in str(error)


async def test_token_never_appears_in_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def echo_auth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        headers = await read_request_headers(reader)
        body = json.dumps({"error": f"ERR bad credentials: {headers.get('authorization')}"})
        await answer(writer, "401 Unauthorized", "application/json", body.encode())

    caplog.set_level(logging.DEBUG)
    async with raw_server(echo_auth) as url:
        limiter = UpstashRateLimiter(url, TOKEN, "p", 2.0)
        try:
            error, _ = await expect_unavailable(limiter)
        finally:
            await limiter.close()

    assert "bad credentials: Bearer ***" in str(error)
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert TOKEN not in repr(limiter)
    assert TOKEN not in caplog.text


async def test_ratelimit_objects_are_cached_per_limit_and_window(
    upstash_limiter: UpstashRateLimiter,
) -> None:
    first = upstash_limiter._ratelimit(5, 60)
    assert upstash_limiter._ratelimit(5, 60) is first
    assert upstash_limiter._ratelimit(6, 60) is not first
    assert upstash_limiter._ratelimit(5, 61) is not first


async def test_invalid_limits_are_refused(upstash_limiter: UpstashRateLimiter) -> None:
    with pytest.raises(ValueError):
        await upstash_limiter.hit("alice", limit=0, window_seconds=60)
    with pytest.raises(ValueError):
        await upstash_limiter.hit("alice", limit=5, window_seconds=0)


async def test_close_closes_the_http_client() -> None:
    limiter = UpstashRateLimiter(f"http://127.0.0.1:{closed_port()}", TOKEN, "p", 1.0)
    await limiter.close()
    # The client keeps its httpx client private; this is the only way to look.
    assert limiter._redis._http._client.is_closed


async def test_concurrent_hits_share_a_bounded_pool_of_connections(
    upstash_shim: tuple[str, str], redis_prefix: str
) -> None:
    """upstash-redis would open up to 100 connections, and httpcore's pool work
    grows with them; the limiter keeps UPSTASH_CONNECTIONS."""
    url, token = upstash_shim
    host, port = url.removeprefix("http://").split(":")
    proxy = await TcpProxy(host, int(port)).start()
    limiter = UpstashRateLimiter(
        f"http://127.0.0.1:{proxy.port}", token, prefix=redis_prefix, timeout_seconds=20
    )
    try:
        results = await asyncio.gather(
            *(limiter.hit("alice", limit=1000, window_seconds=3600) for _ in range(60))
        )
        assert sorted(r.remaining for r in results) == list(range(940, 1000))
        assert 1 <= proxy.accepted <= UPSTASH_CONNECTIONS
    finally:
        await limiter.close()
        await proxy.close()
