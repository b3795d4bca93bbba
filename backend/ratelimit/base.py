"""The ``RateLimiter`` interface: one sliding-window algorithm, two stores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class RateLimitResult:
    """The verdict for one request."""

    allowed: bool
    limit: int
    remaining: int
    reset: float  # unix seconds when the window frees up


@runtime_checkable
class RateLimiter(Protocol):
    """Counts requests per identifier in a sliding window.

    The algorithm is upstash-ratelimit's ``SlidingWindow``: the current fixed
    window's count plus the previous window's count weighted by how much of it
    still overlaps the sliding window; rejected requests are not counted.
    Raises ``backend.errors.RateLimiterUnavailable`` when its store is down or
    slower than its timeout; the caller chooses fail-open or fail-closed.
    """

    async def hit(self, identifier: str, limit: int, window_seconds: int) -> RateLimitResult: ...

    async def close(self) -> None: ...
