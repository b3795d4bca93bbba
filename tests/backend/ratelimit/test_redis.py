"""RedisRateLimiter: the library's script on plain Redis, the Upstash key layout,
deadlines, and outages turned into RateLimiterUnavailable, then recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis
from upstash_ratelimit.limiter import SlidingWindow

from backend.errors import RateLimiterUnavailable
from backend.ratelimit.redis import SLIDING_WINDOW_SCRIPT, RedisRateLimiter, portable_script
from backend.ratelimit.upstash import UpstashRateLimiter
from backend.redis_client import open_redis
from tests.conftest import REDIS_HOST, REDIS_PORT, avoid_window_edge
from tests.fakes.tcp_proxy import TcpProxy

HOUR = 3600


def test_the_upstash_only_shebang_is_removed_and_nothing_else() -> None:
    # What made this necessary: upstash-ratelimit 1.2 flags its scripts for Upstash.
    assert SlidingWindow.SCRIPT.startswith("#!lua flags=allow-key-locking\n")
    assert not SLIDING_WINDOW_SCRIPT.lstrip().startswith("#!")
    assert SlidingWindow.SCRIPT.endswith(SLIDING_WINDOW_SCRIPT)
    assert portable_script("return 1") == "return 1"


async def test_keys_live_under_the_prefix_as_upstash_lays_them_out(
    redis_limiter: RedisRateLimiter, redis_prefix: str
) -> None:
    result = await redis_limiter.hit("alice", limit=5, window_seconds=60)

    window = int(result.reset) // 60 - 1
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=f"{redis_prefix}*"))
        ttl_ms = client.pttl(f"{redis_prefix}:alice:{window}")
    finally:
        client.close()
    assert keys == [f"{redis_prefix}:alice:{window}"]
    assert 120_000 < ttl_ms <= 121_000  # two windows and a second, as upstash-ratelimit sets


async def test_counts_together_with_the_upstash_limiter(
    redis_limiter: RedisRateLimiter, upstash_limiter: UpstashRateLimiter
) -> None:
    """Replicas on REDIS_URL and instances on the REST API share one counter."""
    await avoid_window_edge(HOUR, margin=5)
    verdicts = []
    for i in range(6):
        limiter = redis_limiter if i % 2 else upstash_limiter
        verdicts.append(await limiter.hit("alice", limit=4, window_seconds=HOUR))
    assert [v.allowed for v in verdicts] == [True, True, True, True, False, False]
    assert [v.remaining for v in verdicts] == [3, 2, 1, 0, 0, 0]


async def test_exact_with_many_clients_at_once(redis_url: str, redis_prefix: str) -> None:
    """Several processes' worth of clients (each with its own pool) stay exact."""
    clients = [open_redis(redis_url, max_connections=8) for _ in range(4)]
    limiters = [RedisRateLimiter(c, prefix=redis_prefix, timeout_seconds=20) for c in clients]
    try:
        await avoid_window_edge(HOUR, margin=30)
        results = await asyncio.gather(
            *(limiters[i % 4].hit("bob", limit=60, window_seconds=HOUR) for i in range(400))
        )
    finally:
        for client in clients:
            await client.aclose()
    assert sum(r.allowed for r in results) == 60


@pytest.fixture
async def redis_proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable proxy in front of the test Redis."""
    proxy = await TcpProxy(REDIS_HOST, REDIS_PORT).start()
    yield proxy
    await proxy.close()


async def expect_unavailable(limiter: RedisRateLimiter) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(RateLimiterUnavailable) as caught:
        await limiter.hit("alice", limit=5, window_seconds=60)
    return str(caught.value), time.perf_counter() - started


async def test_an_outage_is_unavailable_then_recovers_on_the_same_client(
    redis_proxy: TcpProxy, redis_prefix: str
) -> None:
    client = open_redis(f"redis://127.0.0.1:{redis_proxy.port}/0")
    limiter = RedisRateLimiter(client, prefix=redis_prefix, timeout_seconds=2)
    try:
        assert (await limiter.hit("alice", limit=5, window_seconds=60)).allowed
        await redis_proxy.down()
        # The pooled connection was cut, and new ones are refused.
        message, took = await expect_unavailable(limiter)
        assert message.startswith("Redis failed") and took < 2
        await redis_proxy.up()
        assert (await limiter.hit("alice", limit=5, window_seconds=60)).remaining == 3
    finally:
        await client.aclose()


async def test_a_silent_server_is_unavailable_within_the_deadline(redis_prefix: str) -> None:
    async def accept_and_say_nothing(reader: asyncio.StreamReader, _: asyncio.StreamWriter):
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(accept_and_say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = open_redis(f"redis://127.0.0.1:{port}/0")
    limiter = RedisRateLimiter(client, prefix=redis_prefix, timeout_seconds=0.3)
    try:
        message, took = await expect_unavailable(limiter)
        assert "within 0.3 s" in message
        assert 0.25 < took < 3
    finally:
        await client.aclose()
        server.close()


async def test_bad_arguments_are_refused_before_any_round_trip(
    redis_limiter: RedisRateLimiter,
) -> None:
    with pytest.raises(ValueError):
        await redis_limiter.hit("alice", limit=0, window_seconds=60)
    with pytest.raises(ValueError):
        await redis_limiter.hit("alice", limit=1, window_seconds=0)
    with pytest.raises(ValueError):
        RedisRateLimiter(redis_limiter._redis, timeout_seconds=0)
