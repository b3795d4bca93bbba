"""``StreamWriter`` on the real Redis: one pipeline for many sessions, each append's
own reply (order kept, a stale id fenced alone), a dead connection fails the round."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from backend.sessions.stream_writer import StreamWriter


async def test_many_sessions_in_order_and_a_stale_append_fenced_alone(
    redis_url: str, redis_prefix: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    writer = StreamWriter(client)
    keys = [f"{redis_prefix}:s{i}" for i in range(20)]
    try:

        async def session(key: str) -> None:
            for seq in range(1, 101):  # one at a time, as a session's EventLog publishes
                await writer.append(key, seq, f"{key}:{seq}", maxlen=1000, expire=60)

        await asyncio.gather(*(session(key) for key in keys))
        for key in keys:
            entries = await client.xrange(key)
            assert [e[0] for e in entries] == [f"{seq}-0".encode() for seq in range(1, 101)]
            assert entries[-1][1] == {b"e": f"{key}:100".encode()}
            assert 0 < await client.ttl(key) <= 60
        # A stale runner's append (id not above the last) fails; the others of the
        # same round succeed.
        results = await asyncio.gather(
            writer.append(keys[0], 100, "stale", maxlen=1000),
            writer.append(keys[1], 101, "fresh", maxlen=1000),
            return_exceptions=True,
        )
        assert isinstance(results[0], redis_errors.ResponseError)
        assert "equal or smaller" in str(results[0])
        assert results[1] is None
        assert (await client.xrevrange(keys[1], count=1))[0][0] == b"101-0"
    finally:
        await client.aclose()


async def test_an_unreachable_redis_fails_every_append_of_the_round() -> None:
    client = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    writer = StreamWriter(client)
    try:
        results = await asyncio.gather(
            *(writer.append(f"k{i}", 1, "x", maxlen=10) for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, redis_errors.ConnectionError) for r in results), results
        with pytest.raises(redis_errors.ConnectionError):  # and the next round tries again
            await writer.append("k", 1, "x", maxlen=10)
    finally:
        await client.aclose()
