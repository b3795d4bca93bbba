"""Dependencies failing under a running server: the database, the rate limiter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.backend.api.conftest import api_for, make_settings
from tests.backend.api.test_health_and_errors import assert_error
from tests.backend.api.test_sessions import new_session
from tests.conftest import PG_HOST, PG_PORT, avoid_window_edge
from tests.fakes.tcp_proxy import TcpProxy


@pytest.fixture
async def pg_proxy(pg_dsn: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A cuttable proxy in front of the test's PostgreSQL database; yields (proxy, DSN through it)."""
    proxy = await TcpProxy(PG_HOST, PG_PORT).start()
    database = pg_dsn.rsplit("/", 1)[1]
    try:
        yield proxy, f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}"
    finally:
        await proxy.close()


async def test_database_down_answers_503_and_recovers(tmp_path, fake_model, pg_proxy) -> None:
    proxy, dsn = pg_proxy
    settings = make_settings(tmp_path, fake_model.url, database_url=dsn, key_cache_ttl_seconds=0.0)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        assert (await api.http.get("/v1/keys", headers=api.auth(key))).status_code == 200
        await proxy.down()
        started = time.monotonic()
        r = await api.http.get("/v1/keys", headers=api.auth(key))
        error = assert_error(r, 503, "SERVICE_UNAVAILABLE")
        assert int(r.headers["retry-after"]) >= 1
        assert "postgres" not in r.text.lower() and "asyncpg" not in r.text.lower()
        assert time.monotonic() - started < 15
        assert error["message"]
        assert_error(await api.http.get("/health/ready"), 503, "SERVICE_UNAVAILABLE")
        assert (await api.http.get("/health")).status_code == 200
        await proxy.up()
        # The server recovers by itself: no restart, no manual step.
        for _ in range(50):
            r = await api.http.get("/v1/keys", headers=api.auth(key))
            if r.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert r.status_code == 200, r.text
        assert (await api.http.get("/health/ready")).status_code == 200


@pytest.mark.parametrize("fail_closed", [False, True])
async def test_rate_limiter_down_fails_open_or_closed(
    tmp_path, fake_model, fail_closed: bool, caplog
) -> None:
    # Port 9 on loopback: nothing listens, connections are refused at once.
    settings = make_settings(
        tmp_path,
        fake_model.url,
        upstash_redis_rest_url="http://127.0.0.1:9",
        upstash_redis_rest_token="token",
        rate_limit_fail_closed=fail_closed,
        rate_limit_timeout_seconds=0.3,
    )
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        statuses = [
            (await api.http.get("/v1/keys", headers=api.auth(key))).status_code for _ in range(3)
        ]
        if fail_closed:
            assert statuses == [503, 503, 503]
        else:
            assert statuses == [200, 200, 200]
        warnings = [r for r in caplog.records if "rate limiter unavailable" in r.getMessage()]
        assert len(warnings) <= 1, "logged at most once a minute"
        assert "token" not in " ".join(r.getMessage() for r in caplog.records)


async def test_upstash_limits_through_the_shim(
    tmp_path, fake_model, upstash_shim, redis_prefix
) -> None:
    from backend.settings import RateLimit

    url, token = upstash_shim
    settings = make_settings(
        tmp_path,
        fake_model.url,
        upstash_redis_rest_url=url,
        upstash_redis_rest_token=token,
        rate_limit_prefix=redis_prefix,
        rate_limit_default=RateLimit(50, 3600),
        # 200 requests at once queue up in the REST client; give them time to be
        # counted rather than failing open.
        rate_limit_timeout_seconds=15.0,
    )
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        await avoid_window_edge(3600, margin=30)
        results = await asyncio.gather(
            *(api.http.get("/v1/keys", headers=api.auth(key)) for _ in range(200))
        )
        codes = [r.status_code for r in results]
        assert codes.count(200) == 50 and codes.count(429) == 150
        refused = next(r for r in results if r.status_code == 429)
        assert refused.headers["retry-after"] and refused.headers["x-ratelimit-remaining"] == "0"


async def test_model_proxy_answers_503_while_the_database_is_down(
    tmp_path, fake_model, pg_proxy
) -> None:
    """Tokens are read from the database on every call: without it the proxy answers
    503 ``api_error`` in the Anthropic error shape (which the SDKs retry), then recovers."""
    proxy, dsn = pg_proxy
    settings = make_settings(tmp_path, fake_model.url, database_url=dsn)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        sid = await new_session(api, key)
        token = await api.app.state.model_proxy.tokens.mint(sid, "alice")
        body = {
            "model": "claude-sonnet-5-5",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hi"}],
        }

        async def call() -> Any:
            return await api.http.post(
                f"/v1/model-proxy/{sid}/v1/messages", json=body, headers={"x-api-key": token}
            )

        assert (await call()).status_code == 200
        await proxy.down()
        r = await call()
        assert r.status_code == 503, r.text
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "api_error"
        assert "postgres" not in r.text.lower() and "asyncpg" not in r.text.lower()
        await proxy.up()
        for _ in range(50):
            r = await call()
            if r.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert r.status_code == 200, r.text
