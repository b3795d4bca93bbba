"""Behaviour every rate limiter shares: one sliding-window algorithm, three stores."""

from __future__ import annotations

import asyncio
import time

import pytest

from backend.ratelimit import RateLimiter, RateLimitResult
from backend.ratelimit.memory import MemoryRateLimiter
from backend.ratelimit.redis import RedisRateLimiter
from backend.ratelimit.upstash import UpstashRateLimiter
from tests.conftest import avoid_window_edge

HOUR = 3600


def test_every_limiter_satisfies_the_protocol() -> None:
    from backend.redis_client import open_redis

    assert isinstance(MemoryRateLimiter(), RateLimiter)
    assert isinstance(UpstashRateLimiter("http://127.0.0.1:1", "t", "p", 0.1), RateLimiter)
    assert isinstance(RedisRateLimiter(open_redis("redis://127.0.0.1:1")), RateLimiter)


async def test_allows_up_to_the_limit_then_refuses(limiter: RateLimiter) -> None:
    await avoid_window_edge(HOUR, margin=5)
    results = [await limiter.hit("alice", limit=3, window_seconds=HOUR) for _ in range(5)]

    assert [r.allowed for r in results] == [True, True, True, False, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0, 0]
    assert all(r.limit == 3 for r in results)


async def test_reset_is_the_end_of_the_current_window(limiter: RateLimiter) -> None:
    await avoid_window_edge(HOUR, margin=5)
    before = time.time()
    result = await limiter.hit("alice", limit=3, window_seconds=HOUR)

    assert isinstance(result, RateLimitResult)
    assert before < result.reset <= before + HOUR
    assert result.reset % HOUR == 0  # windows are aligned to the unix epoch


async def test_identifiers_are_counted_apart(limiter: RateLimiter) -> None:
    await avoid_window_edge(HOUR, margin=5)
    for _ in range(2):
        assert (await limiter.hit("alice", limit=2, window_seconds=HOUR)).allowed
    assert not (await limiter.hit("alice", limit=2, window_seconds=HOUR)).allowed

    bob = await limiter.hit("bob", limit=2, window_seconds=HOUR)
    assert bob.allowed
    assert bob.remaining == 1


async def test_refused_requests_are_not_counted(limiter: RateLimiter) -> None:
    await avoid_window_edge(HOUR, margin=5)
    for _ in range(2):
        await limiter.hit("alice", limit=2, window_seconds=HOUR)
    for _ in range(5):
        await limiter.hit("alice", limit=2, window_seconds=HOUR)

    # A higher limit on the same counter sees only the two accepted requests.
    result = await limiter.hit("alice", limit=4, window_seconds=HOUR)
    assert result.allowed
    assert result.remaining == 1


async def test_requests_are_allowed_again_once_the_window_slides(limiter: RateLimiter) -> None:
    await avoid_window_edge(1, margin=0.4)
    results = [await limiter.hit("alice", limit=2, window_seconds=1) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]

    await asyncio.sleep(results[-1].reset - time.time() + 0.02)
    later = await limiter.hit("alice", limit=2, window_seconds=1)
    assert later.allowed
    assert later.reset == results[-1].reset + 1


async def test_exact_under_concurrency(limiter: RateLimiter) -> None:
    await avoid_window_edge(HOUR, margin=30)
    results = await asyncio.gather(
        *(limiter.hit("alice", limit=50, window_seconds=HOUR) for _ in range(200))
    )

    allowed = [r for r in results if r.allowed]
    assert len(allowed) == 50
    assert sorted(r.remaining for r in allowed) == list(range(50))


class FakeClock:
    """Unix time that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake_clock(
    request: pytest.FixtureRequest, limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> tuple[RateLimiter, FakeClock]:
    """The limiter under test, driven by a fake clock at the start of a 10 s window."""
    # A window a little ahead of real time: the Redis keys' TTLs run on real time.
    clock = FakeClock((int(time.time()) // 10 + 10) * 10)
    if isinstance(limiter, MemoryRateLimiter):
        return MemoryRateLimiter(clock=clock), clock
    if isinstance(limiter, RedisRateLimiter):
        redis_limiter = RedisRateLimiter(
            request.getfixturevalue("redis_client"),
            prefix=request.getfixturevalue("redis_prefix"),
            timeout_seconds=20,
            clock=clock,
        )
        return redis_limiter, clock
    import upstash_ratelimit.limiter

    monkeypatch.setattr(upstash_ratelimit.limiter, "now_ms", lambda: int(clock() * 1000))
    return limiter, clock


async def test_weights_the_previous_window_by_its_remaining_overlap(
    fake_clock: tuple[RateLimiter, FakeClock],
) -> None:
    limiter, clock = fake_clock
    start = clock.now

    async def burst(at: float, count: int) -> list[tuple[bool, int]]:
        clock.now = start + at
        results = [await limiter.hit("alice", limit=10, window_seconds=10) for _ in range(count)]
        return [(r.allowed, r.remaining) for r in results]

    # Window 0: ten accepted, the eleventh refused.
    assert await burst(1, 11) == [(True, 9 - i) for i in range(10)] + [(False, 0)]
    # Window 1 at 25%: 75% of window 0's ten still count, floor(7.5) = 7.
    assert await burst(12.5, 4) == [(True, 2), (True, 1), (True, 0), (False, 0)]
    # Window 2 at 50%: half of window 1's three count, floor(1.5) = 1.
    assert await burst(25, 10) == [(True, 8 - i) for i in range(9)] + [(False, 0)]
    # Window 4: window 3 was empty, so the full limit is back.
    assert await burst(40, 1) == [(True, 9)]
