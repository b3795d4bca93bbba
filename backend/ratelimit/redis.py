"""The shared rate limiter over the Redis protocol: upstash-ratelimit's sliding window
run by redis-py's asyncio client (hiredis), for deployments with ``REDIS_URL``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError
from upstash_ratelimit.limiter import SlidingWindow

from backend.errors import RateLimiterUnavailable
from backend.ratelimit.base import RateLimitResult

__all__ = ["SLIDING_WINDOW_SCRIPT", "RedisRateLimiter", "portable_script"]


def portable_script(script: str) -> str:
    """``script`` without its ``#!lua`` shebang line.

    upstash-ratelimit 1.2 starts every script with ``#!lua
    flags=allow-key-locking``, an Upstash-only flag that Redis rejects ("ERR
    Unexpected flag in script shebang"), and Redis before 7 knows no shebang at
    all. Without the line, every Redis and Upstash runs the script as a plain
    ``EVAL`` script that names all its keys in KEYS, which it does.
    """
    if script.lstrip().startswith("#!"):
        return script.lstrip().partition("\n")[2]
    return script


# The library's own script: the same algorithm and the same keys as the Upstash
# REST limiter, so both (and any mix of replicas using them) count together.
SLIDING_WINDOW_SCRIPT = portable_script(SlidingWindow.SCRIPT)


class RedisRateLimiter:
    """A ``RateLimiter`` shared by every replica, stored in Redis and spoken to over RESP.

    Each hit is one ``EVALSHA`` of upstash-ratelimit's ``SlidingWindow`` script
    (registered once; redis-py loads it again on ``NOSCRIPT``), so it is atomic
    across replicas and costs one round trip on a pooled connection. Keys are
    those of ``UpstashRateLimiter``: ``{prefix}:{identifier}:{window index}``,
    expiring on their own two windows later. "Now" is this host's clock, as in
    upstash-ratelimit.

    Every hit is bounded by ``timeout_seconds``; a slow, unreachable or failing
    Redis raises ``RateLimiterUnavailable`` (the caller fails open or closed).
    redis-py reconnects by itself, so a hit after Redis returns just works.
    The client is the caller's: ``close`` does not close it.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str = "agent-tui",
        timeout_seconds: float = 0.5,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` returns unix seconds (injectable for tests)."""
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._redis = redis
        self._prefix = prefix
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._script = redis.register_script(SLIDING_WINDOW_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisRateLimiter(prefix={self._prefix!r})"

    async def hit(self, identifier: str, limit: int, window_seconds: int) -> RateLimitResult:
        """Count one request for ``identifier`` unless it is over ``limit`` per window."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        window_ms = int(window_seconds * 1000)
        if window_ms < 1:
            raise ValueError("window_seconds must be positive")
        # As SlidingWindow._limit computes them: integer milliseconds, windows
        # counted from the epoch, the current and the previous window's keys.
        now_ms = int(self._clock() * 1000)
        current = now_ms // window_ms
        key = f"{self._prefix}:{identifier}"
        try:
            async with asyncio.timeout(self._timeout_seconds):
                remaining = await self._script(
                    keys=[f"{key}:{current}", f"{key}:{current - 1}"],
                    args=[limit, now_ms, window_ms, 1],
                )
        except TimeoutError:
            raise RateLimiterUnavailable(
                f"Redis did not answer within {self._timeout_seconds:g} s"
            ) from None
        except (RedisError, OSError) as exc:
            raise RateLimiterUnavailable(f"Redis failed: {type(exc).__name__}: {exc}") from None
        remaining = int(remaining)
        return RateLimitResult(
            allowed=remaining >= 0,
            limit=limit,
            remaining=max(0, remaining),
            reset=(current + 1) * window_ms / 1000,
        )

    async def close(self) -> None:
        """Nothing to release: the Redis client belongs to whoever opened it."""
