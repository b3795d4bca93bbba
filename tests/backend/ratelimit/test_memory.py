"""MemoryRateLimiter: bounded memory, speed, and the edges of its input."""

from __future__ import annotations

import time

import pytest

from backend.ratelimit.memory import MemoryRateLimiter


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_idle_identifiers_are_dropped() -> None:
    clock = FakeClock(1_000_000.0)
    limiter = MemoryRateLimiter(clock=clock)
    for i in range(1000):
        await limiter.hit(f"old-{i}", limit=5, window_seconds=10)
    assert limiter.tracked_identifiers == 1000

    # Two windows later the old counters weigh nothing; new hits sweep them.
    clock.now += 20
    for i in range(250):
        await limiter.hit(f"new-{i}", limit=5, window_seconds=10)
    assert limiter.tracked_identifiers == 250


async def test_identifiers_of_the_previous_window_are_kept() -> None:
    clock = FakeClock(1_000_000.0)
    limiter = MemoryRateLimiter(clock=clock)
    for _ in range(5):
        await limiter.hit("alice", limit=5, window_seconds=10)

    clock.now += 10
    for i in range(100):
        await limiter.hit(f"other-{i}", limit=5, window_seconds=10)
    assert not (await limiter.hit("alice", limit=5, window_seconds=10)).allowed


async def test_identifiers_are_capped() -> None:
    limiter = MemoryRateLimiter(max_identifiers=100)
    for i in range(1000):
        await limiter.hit(f"user-{i}", limit=5, window_seconds=60)
    assert limiter.tracked_identifiers == 100


async def test_window_lengths_are_counted_apart() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock(1_000_000.0))
    assert (await limiter.hit("alice", limit=1, window_seconds=10)).allowed
    assert not (await limiter.hit("alice", limit=1, window_seconds=10)).allowed
    assert (await limiter.hit("alice", limit=1, window_seconds=60)).allowed


async def test_a_clock_that_steps_back_does_not_reopen_the_window() -> None:
    clock = FakeClock(1_000_005.0)
    limiter = MemoryRateLimiter(clock=clock)
    assert (await limiter.hit("alice", limit=1, window_seconds=10)).allowed
    clock.now -= 10
    assert not (await limiter.hit("alice", limit=1, window_seconds=10)).allowed


async def test_invalid_limits_are_refused() -> None:
    limiter = MemoryRateLimiter()
    with pytest.raises(ValueError):
        await limiter.hit("alice", limit=0, window_seconds=60)
    with pytest.raises(ValueError):
        await limiter.hit("alice", limit=5, window_seconds=0)
    with pytest.raises(ValueError):
        MemoryRateLimiter(max_identifiers=0)


async def test_close_forgets_everything() -> None:
    limiter = MemoryRateLimiter()
    await limiter.hit("alice", limit=5, window_seconds=60)
    await limiter.close()
    assert limiter.tracked_identifiers == 0


async def test_a_hit_takes_microseconds() -> None:
    limiter = MemoryRateLimiter()
    started = time.perf_counter()
    for i in range(20_000):
        await limiter.hit(f"user-{i % 500}", limit=1000, window_seconds=60)
    per_hit = (time.perf_counter() - started) / 20_000
    # About 3 µs here; the bound only catches an accidental O(n) step.
    assert per_hit < 100e-6
