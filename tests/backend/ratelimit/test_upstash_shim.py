"""The Upstash REST shim (tests/fakes/upstash_shim.py) speaks the protocol the clients expect."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from upstash_redis.asyncio import Redis

from tests.fakes.upstash_shim import rewrite_script

LOCKING_SCRIPT = "#!lua flags=allow-key-locking\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
async def http(upstash_shim: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A raw HTTP client with the shim's token and base64 encoding, like upstash-redis."""
    url, token = upstash_shim
    headers = {"Authorization": f"Bearer {token}", "Upstash-Encoding": "base64"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        yield client


@pytest.fixture
async def upstash(upstash_shim: tuple[str, str]) -> AsyncIterator[Redis]:
    url, token = upstash_shim
    client = Redis(url, token, rest_retries=0, allow_telemetry=False)
    yield client
    await client.close()


async def post(http: httpx.AsyncClient, path: str, body: Any) -> tuple[int, Any]:
    response = await http.post(path, json=body)
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("#!lua flags=allow-key-locking\nreturn 1", "#!lua\nreturn 1"),
        ("#!lua flags=no-writes,allow-key-locking\nreturn 1", "#!lua flags=no-writes\nreturn 1"),
        ("#!lua name=lib flags=allow-key-locking\nreturn 1", "#!lua name=lib\nreturn 1"),
        ("return 1", "return 1"),
    ],
)
def test_rewrite_script_drops_only_upstash_flags(script: str, expected: str) -> None:
    assert rewrite_script(script) == expected


async def test_results_are_base64_except_ok(http: httpx.AsyncClient, redis_prefix: str) -> None:
    key = f"{redis_prefix}:greeting"
    assert await post(http, "/", ["SET", key, "héllo"]) == (200, {"result": "OK"})
    assert await post(http, "/", ["GET", key]) == (200, {"result": b64("héllo")})
    assert await post(http, "/", ["GET", f"{redis_prefix}:missing"]) == (200, {"result": None})
    assert await post(http, "/", ["INCR", f"{redis_prefix}:n"]) == (200, {"result": 1})
    assert await post(http, "/", ["MGET", key, f"{redis_prefix}:n"]) == (
        200,
        {"result": [b64("héllo"), b64("1")]},
    )


async def test_results_are_plain_without_the_encoding_header(
    upstash_shim: tuple[str, str], redis_prefix: str
) -> None:
    url, token = upstash_shim
    key = f"{redis_prefix}:greeting"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client:
        await client.post(url, json=["SET", key, "héllo"])
        response = await client.post(url, json=["GET", key])
    assert response.json() == {"result": "héllo"}


async def test_auth_is_required(upstash_shim: tuple[str, str]) -> None:
    url, token = upstash_shim
    async with httpx.AsyncClient() as client:
        missing = await client.post(url, json=["PING"])
        wrong = await client.post(url, json=["PING"], headers={"Authorization": "Bearer nope"})
        query = await client.post(url, json=["PING"], params={"_token": token})
    assert (missing.status_code, missing.json()) == (401, {"error": "Unauthorized"})
    assert wrong.status_code == 401
    assert query.json() == {"result": "PONG"}


async def test_errors_keep_their_redis_code(http: httpx.AsyncClient, redis_prefix: str) -> None:
    key = f"{redis_prefix}:text"
    await post(http, "/", ["SET", key, "x"])
    assert await post(http, "/", ["INCR", key]) == (
        400,
        {"error": "ERR value is not an integer or out of range"},
    )
    status, body = await post(http, "/", ["EVALSHA", "0" * 40, 0])
    assert status == 400
    assert body["error"].startswith("NOSCRIPT ")
    status, body = await post(http, "/", ["LPUSH", key, "y"])
    assert body["error"].startswith("WRONGTYPE ")
    assert (await post(http, "/", {"not": "a command"}))[0] == 400


async def test_eval_accepts_the_allow_key_locking_shebang(
    http: httpx.AsyncClient, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:counter"
    assert await post(http, "/", ["EVAL", LOCKING_SCRIPT, 1, key, 5]) == (200, {"result": 5})
    # EVAL caches the script too: its SHA as sent now works with EVALSHA.
    sha = hashlib.sha1(LOCKING_SCRIPT.encode()).hexdigest()
    assert await post(http, "/", ["EVALSHA", sha, 1, key, 1]) == (200, {"result": 6})


async def test_script_load_and_evalsha_round_trip(upstash: Redis, redis_prefix: str) -> None:
    sha = await upstash.script_load(LOCKING_SCRIPT)

    assert sha == hashlib.sha1(LOCKING_SCRIPT.encode()).hexdigest()
    assert await upstash.script_exists(sha) == [True]
    assert await upstash.evalsha(sha, keys=[f"{redis_prefix}:c"], args=[2]) == 2


async def test_pipeline_runs_every_command_in_order(
    http: httpx.AsyncClient, redis_prefix: str
) -> None:
    text, n = f"{redis_prefix}:text", f"{redis_prefix}:n"
    status, body = await post(
        http, "/pipeline", [["SET", text, "x"], ["INCR", text], ["INCR", n], ["GET", n]]
    )
    assert status == 200
    assert body == [
        {"result": "OK"},
        {"error": "ERR value is not an integer or out of range"},
        {"result": 1},
        {"result": b64("1")},
    ]


async def test_multi_exec_is_one_transaction(upstash: Redis, redis_prefix: str) -> None:
    n = f"{redis_prefix}:n"
    transaction = upstash.multi()
    transaction.incr(n)
    transaction.incrby(n, 4)
    transaction.expire(n, 60)
    assert await transaction.exec() == [1, 5, True]


async def test_multi_exec_aborts_on_a_queue_time_error(
    http: httpx.AsyncClient, redis_prefix: str
) -> None:
    n = f"{redis_prefix}:n"
    status, body = await post(http, "/multi-exec", [["INCR", n], ["NOSUCHCOMMAND"]])
    assert status == 400
    assert body["error"].startswith("EXECABORT ")
    assert await post(http, "/", ["GET", n]) == (200, {"result": None})


async def test_client_side_types_come_from_raw_replies(upstash: Redis, redis_prefix: str) -> None:
    h = f"{redis_prefix}:h"
    await upstash.hset(h, values={"a": "1", "b": "2"})
    # Raw RESP2 replies (a flat list, 0/1) that upstash-redis itself shapes.
    assert await upstash.hgetall(h) == {"a": "1", "b": "2"}
    assert await upstash.expire(h, 60) is True
    assert await upstash.expire(f"{redis_prefix}:missing", 60) is False
