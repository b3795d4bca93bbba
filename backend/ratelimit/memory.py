"""The embedded rate limiter: upstash-ratelimit's sliding window, kept in process memory."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from backend.ratelimit.base import RateLimitResult

__all__ = ["MemoryRateLimiter"]

# How many stale identifiers one hit may drop. More than one, so that dropping
# always outpaces the at most one identifier a hit can add; small, so that no
# single hit pays for a big sweep.
_SWEEP_PER_HIT = 4


class _Counter:
    """One identifier's two fixed windows: the current one and the one before it."""

    __slots__ = ("count", "previous", "window")

    def __init__(self, window: int) -> None:
        self.window = window  # index of the current fixed window: now_ms // window_ms
        self.count = 0  # requests counted in that window
        self.previous = 0  # requests counted in the window before it


class MemoryRateLimiter:
    """A ``RateLimiter`` for one process, with the same algorithm as ``UpstashRateLimiter``.

    upstash-ratelimit's ``SlidingWindow``: windows are fixed slices of
    ``window_seconds`` counted from the unix epoch; a request is allowed while
    ``count(current) + floor(count(previous) * share of the previous window still
    inside the sliding window)`` is below ``limit``; refused requests are not
    counted; ``reset`` is the end of the current fixed window.

    Each hit is O(1) and runs without awaiting, so it is exact under any number
    of concurrent asyncio tasks (not across threads or processes). Identifiers
    idle for two windows are dropped a few at a time on later hits, so memory
    follows the number of recently active identifiers; ``max_identifiers`` per
    window length is a hard cap on top of that, after which the least recently
    active identifier is forgotten (its count starts again from zero).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_identifiers: int = 100_000,
    ) -> None:
        """``clock`` returns unix seconds (injectable for tests); ``max_identifiers``
        bounds the identifiers kept per window length."""
        if max_identifiers < 1:
            raise ValueError("max_identifiers must be at least 1")
        self._clock = clock
        self._max_identifiers = max_identifiers
        # One queue per window length: there, moving a counter to the end whenever
        # its window advances keeps the queue ordered by window index, so stale
        # counters are always at the front. Mixing window lengths would break that.
        self._counters: dict[int, OrderedDict[str, _Counter]] = {}

    @property
    def tracked_identifiers(self) -> int:
        """How many (identifier, window length) counters are held right now."""
        return sum(len(queue) for queue in self._counters.values())

    async def hit(self, identifier: str, limit: int, window_seconds: int) -> RateLimitResult:
        """Count one request for ``identifier`` unless it is over ``limit`` per window."""
        # Synchronous on purpose: with no await between reading and updating a
        # counter, concurrent tasks cannot interleave and over-admit.
        return self._hit(identifier, limit, window_seconds)

    def _hit(self, identifier: str, limit: int, window_seconds: float) -> RateLimitResult:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        window_ms = int(window_seconds * 1000)
        if window_ms < 1:
            raise ValueError("window_seconds must be positive")
        # Integer milliseconds, as upstash-ratelimit computes them, so both
        # limiters agree to the millisecond on window edges and weights.
        now_ms = int(self._clock() * 1000)
        current = now_ms // window_ms

        queue = self._counters.get(window_ms)
        if queue is None:
            queue = self._counters[window_ms] = OrderedDict()
        counter = queue.get(identifier)
        if counter is None:
            counter = queue[identifier] = _Counter(current)
            self._sweep(queue, current)
        elif counter.window < current:
            # Only the window just before the current one still weighs anything.
            counter.previous = counter.count if counter.window == current - 1 else 0
            counter.count = 0
            counter.window = current
            queue.move_to_end(identifier)
            self._sweep(queue, current)
        # A clock that stepped back (counter.window > current) keeps counting in
        # the newer window rather than resurrecting an old one.

        reset = (counter.window + 1) * window_ms / 1000
        # The same float expression as the Lua script, so floor() lands alike.
        weight = 1 - (now_ms % window_ms) / window_ms
        used = math.floor(weight * counter.previous) + counter.count
        if used >= limit:
            return RateLimitResult(allowed=False, limit=limit, remaining=0, reset=reset)
        counter.count += 1
        return RateLimitResult(allowed=True, limit=limit, remaining=limit - used - 1, reset=reset)

    def _sweep(self, queue: OrderedDict[str, _Counter], current: int) -> None:
        """Drop a few counters whose windows no longer weigh anything, oldest first."""
        for _ in range(_SWEEP_PER_HIT):
            oldest = next(iter(queue.values()))
            if oldest.window >= current - 1:
                break
            queue.popitem(last=False)
        while len(queue) > self._max_identifiers:
            queue.popitem(last=False)

    async def close(self) -> None:
        """Forget every counter."""
        self._counters.clear()
