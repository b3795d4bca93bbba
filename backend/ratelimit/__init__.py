"""Rate limiting: the ``RateLimiter`` interface; in-memory, Redis (RESP) and Upstash (REST)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.ratelimit.base import RateLimiter, RateLimitResult
from backend.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RateLimitResult", "RateLimiter", "open_rate_limiter"]


def open_rate_limiter(settings: Settings, redis: Redis | None = None) -> RateLimiter:
    """The limiter the settings call for, in this order of preference:

    - ``REDIS_URL`` set: Redis over its own protocol, through ``redis`` (the
      process's client, opened by the caller);
    - Upstash REST URL and token set: Upstash over HTTPS;
    - neither: in memory (one process).
    """
    if settings.uses_redis:
        if redis is None:
            raise ValueError("REDIS_URL is set: open_rate_limiter needs the Redis client")
        from backend.ratelimit.redis import RedisRateLimiter

        return RedisRateLimiter(
            redis,
            prefix=settings.rate_limit_prefix,
            timeout_seconds=settings.rate_limit_timeout_seconds,
        )
    if settings.uses_upstash:
        from backend.ratelimit.upstash import UpstashRateLimiter

        return UpstashRateLimiter(
            url=settings.upstash_redis_rest_url,
            token=settings.upstash_redis_rest_token,
            prefix=settings.rate_limit_prefix,
            timeout_seconds=settings.rate_limit_timeout_seconds,
        )
    from backend.ratelimit.memory import MemoryRateLimiter

    return MemoryRateLimiter()
