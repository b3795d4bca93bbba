"""Fixtures for the rate limiter tests: every limiter, and the Upstash shim."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from backend.ratelimit import RateLimiter
from backend.ratelimit.memory import MemoryRateLimiter
from backend.ratelimit.redis import RedisRateLimiter
from backend.ratelimit.upstash import UpstashRateLimiter
from backend.redis_client import open_redis
from tests.fakes.upstash_shim import upstash_shim

__all__ = ["limiter", "redis_client", "redis_limiter", "upstash_limiter", "upstash_shim"]


@pytest.fixture
async def upstash_limiter(
    upstash_shim: tuple[str, str], redis_prefix: str
) -> AsyncIterator[UpstashRateLimiter]:
    """An ``UpstashRateLimiter`` through the shim, its keys under ``redis_prefix``."""
    url, token = upstash_shim
    # A generous deadline: these tests are about behaviour, not latency.
    limiter = UpstashRateLimiter(url=url, token=token, prefix=redis_prefix, timeout_seconds=20)
    yield limiter
    await limiter.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """The process's Redis client as the server opens it, on the test Redis."""
    client = open_redis(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def redis_limiter(redis_client: Redis, redis_prefix: str) -> RedisRateLimiter:
    """A ``RedisRateLimiter`` on the test Redis, its keys under ``redis_prefix``."""
    return RedisRateLimiter(redis_client, prefix=redis_prefix, timeout_seconds=20)


@pytest.fixture(params=["memory", "upstash", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    """Each limiter in turn, for the behaviour they must share."""
    # Sync on purpose: an async fixture could not pull in the async
    # ``upstash_limiter`` fixture from inside the running event loop.
    if request.param == "memory":
        return MemoryRateLimiter()
    limiter: RateLimiter = request.getfixturevalue(f"{request.param}_limiter")
    return limiter
