"""Fixtures for the rate limiter tests: both limiters, and the Upstash shim."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from backend.ratelimit import RateLimiter
from backend.ratelimit.memory import MemoryRateLimiter
from backend.ratelimit.upstash import UpstashRateLimiter
from tests.fakes.upstash_shim import upstash_shim

__all__ = ["limiter", "upstash_limiter", "upstash_shim"]


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


@pytest.fixture(params=["memory", "upstash"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    """Each limiter in turn, for the behaviour they must share."""
    # Sync on purpose: an async fixture could not pull in the async
    # ``upstash_limiter`` fixture from inside the running event loop.
    if request.param == "memory":
        return MemoryRateLimiter()
    limiter: RateLimiter = request.getfixturevalue("upstash_limiter")
    return limiter
