"""Rate limiting: the ``RateLimiter`` interface, an in-memory and an Upstash implementation."""

from __future__ import annotations

from backend.ratelimit.base import RateLimiter, RateLimitResult
from backend.settings import Settings

__all__ = ["RateLimitResult", "RateLimiter", "open_rate_limiter"]


def open_rate_limiter(settings: Settings) -> RateLimiter:
    """Upstash Redis when its URL and token are set, else the in-memory limiter."""
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
