"""API keys over HTTP: authentication, scopes, create/list/revoke, caching, rate limits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from backend.auth import KEY_PATTERN
from tests.backend.api.conftest import Api
from tests.backend.api.test_health_and_errors import assert_error
from tests.conftest import avoid_window_edge


async def test_missing_malformed_unknown_keys_answer_401(api: Api) -> None:
    assert_error(await api.http.get("/v1/keys"), 401, "INVALID_API_KEY")
    assert_error(
        await api.http.get("/v1/keys", headers={"Authorization": "Bearer nope"}),
        401,
        "INVALID_API_KEY",
    )
    assert_error(
        await api.http.get("/v1/keys", headers={"Authorization": "Basic abc"}),
        401,
        "INVALID_API_KEY",
    )
    unknown = "aa_live_" + "A" * 32
    assert_error(await api.http.get("/v1/keys", headers=api.auth(unknown)), 401, "INVALID_API_KEY")


async def test_expired_key_answers_401(api: Api) -> None:
    key = await api.key(expires_at=datetime.now(UTC) + timedelta(seconds=1))
    assert (await api.http.get("/v1/keys", headers=api.auth(key))).status_code == 200
    await asyncio.sleep(1.1)
    error = assert_error(
        await api.http.get("/v1/keys", headers=api.auth(key)), 401, "INVALID_API_KEY"
    )
    assert "expired" in error["message"]


async def test_create_list_revoke(api: Api) -> None:
    admin = await api.key()
    r = await api.http.post(
        "/v1/keys",
        json={"name": "ci", "environment": "test", "scopes": ["sessions"]},
        headers=api.auth(admin),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert KEY_PATTERN.match(created["key"]) and created["key"].startswith("aa_test_")
    assert created["prefix"] == created["key"][:12] and created["last4"] == created["key"][-4:]
    assert created["userId"] == "alice" and created["scopes"] == ["sessions"]

    new_key = created["key"]
    listing = (await api.http.get("/v1/keys", headers=api.auth(new_key))).json()["keys"]
    assert {k["name"] for k in listing} == {"alice-key", "ci"}
    assert all("key" not in k and "keyHash" not in k for k in listing)
    assert all(
        set(k)
        >= {
            "id",
            "name",
            "prefix",
            "last4",
            "environment",
            "scopes",
            "createdAt",
            "lastUsedAt",
            "expiresAt",
            "revokedAt",
        }
        for k in listing
    )

    # A sessions-scoped key may list but not manage keys.
    assert_error(
        await api.http.post("/v1/keys", json={"name": "x"}, headers=api.auth(new_key)),
        403,
        "FORBIDDEN",
    )
    assert_error(
        await api.http.delete(f"/v1/keys/{created['id']}", headers=api.auth(new_key)),
        403,
        "FORBIDDEN",
    )

    r = await api.http.delete(f"/v1/keys/{created['id']}", headers=api.auth(admin))
    assert r.status_code == 200 and r.json()["revokedAt"]
    # Revocation takes effect on the very next request (the verifier's cache is evicted).
    error = assert_error(
        await api.http.get("/v1/keys", headers=api.auth(new_key)), 401, "INVALID_API_KEY"
    )
    assert "revoked" in error["message"]
    # Idempotent.
    again = await api.http.delete(f"/v1/keys/{created['id']}", headers=api.auth(admin))
    assert again.status_code == 200 and again.json()["revokedAt"] == r.json()["revokedAt"]


async def test_other_users_keys_are_not_found(api: Api) -> None:
    alice = await api.key("alice")
    bob = await api.key("bob")
    bobs = (await api.http.get("/v1/keys", headers=api.auth(bob))).json()["keys"]
    assert_error(
        await api.http.delete(f"/v1/keys/{bobs[0]['id']}", headers=api.auth(alice)),
        404,
        "KEY_NOT_FOUND",
    )
    alices = (await api.http.get("/v1/keys", headers=api.auth(alice))).json()["keys"]
    assert [k["name"] for k in alices] == ["alice-key"]


async def test_create_validation(api: Api) -> None:
    admin = await api.key()
    for body in (
        {"name": ""},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "environment": "prod"},
        {"name": "x", "scopes": []},
        {"name": "x", "expiresAt": "2001-01-01T00:00:00Z"},
    ):
        assert_error(
            await api.http.post("/v1/keys", json=body, headers=api.auth(admin)),
            400,
            "VALIDATION_ERROR",
        )


async def test_auth_is_cached_and_last_used_written_once_a_minute(api: Api, monkeypatch) -> None:
    key = await api.key()
    lookups = touches = 0
    real_get, real_touch = api.store.get_key_by_hash, api.store.touch_key

    async def counting_get(digest: str):
        nonlocal lookups
        lookups += 1
        return await real_get(digest)

    async def counting_touch(key_id: str, at: datetime) -> None:
        nonlocal touches
        touches += 1
        await real_touch(key_id, at)

    monkeypatch.setattr(api.store, "get_key_by_hash", counting_get)
    monkeypatch.setattr(api.store, "touch_key", counting_touch)
    for _ in range(20):
        assert (await api.http.get("/v1/keys", headers=api.auth(key))).status_code == 200
    assert lookups == 1
    assert touches == 1
    keys = (await api.http.get("/v1/keys", headers=api.auth(key))).json()["keys"]
    assert keys[0]["lastUsedAt"] is not None


async def test_rate_limit_headers_and_429(tmp_path, fake_model) -> None:
    from backend.settings import RateLimit
    from tests.backend.api.conftest import api_for, make_settings

    settings = make_settings(tmp_path, fake_model.url, rate_limit_default=RateLimit(5, 60))
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        remaining = []
        for _ in range(5):
            r = await api.http.get("/v1/keys", headers=api.auth(key))
            assert r.status_code == 200
            assert r.headers["x-ratelimit-limit"] == "5"
            remaining.append(int(r.headers["x-ratelimit-remaining"]))
            assert int(r.headers["x-ratelimit-reset"]) > datetime.now(UTC).timestamp()
        assert remaining == [4, 3, 2, 1, 0]
        r = await api.http.get("/v1/keys", headers=api.auth(key))
        error = assert_error(r, 429, "RATE_LIMIT_EXCEEDED")
        assert int(r.headers["retry-after"]) >= 1
        assert error["details"]["limit"] == 5 and error["details"]["windowSeconds"] == 60
        assert error["details"]["resetAt"].endswith("Z")
        assert r.headers["x-ratelimit-remaining"] == "0"
        # Another user has a budget of its own.
        other = await api.key("bob")
        assert (await api.http.get("/v1/keys", headers=api.auth(other))).status_code == 200


async def test_rate_limit_is_exact_under_concurrency(tmp_path, fake_model) -> None:
    from backend.settings import RateLimit
    from tests.backend.api.conftest import api_for, make_settings

    settings = make_settings(tmp_path, fake_model.url, rate_limit_default=RateLimit(50, 3600))
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        await avoid_window_edge(3600, margin=30)
        results = await asyncio.gather(
            *(api.http.get("/v1/keys", headers=api.auth(key)) for _ in range(200))
        )
        codes = [r.status_code for r in results]
        assert codes.count(200) == 50 and codes.count(429) == 150


async def test_revocation_reaches_another_process_within_the_cache_ttl(
    tmp_path, fake_model
) -> None:
    from tests.backend.api.conftest import api_for, make_settings

    # Two servers on one database stand for two processes; each has its own key cache.
    settings = make_settings(tmp_path, fake_model.url, key_cache_ttl_seconds=1.0)
    async with api_for(settings, fake_model) as first, api_for(settings, fake_model) as second:
        admin = await first.key()
        victim = await first.key("alice", scopes=("sessions",))
        assert (await second.http.get("/v1/keys", headers=second.auth(victim))).status_code == 200
        victim_id = next(
            k["id"]
            for k in (await first.http.get("/v1/keys", headers=first.auth(admin))).json()["keys"]
            if k["scopes"] == ["sessions"]
        )
        assert (
            await first.http.delete(f"/v1/keys/{victim_id}", headers=first.auth(admin))
        ).status_code == 200
        assert (await first.http.get("/v1/keys", headers=first.auth(victim))).status_code == 401
        started = asyncio.get_running_loop().time()
        for _ in range(100):
            if (await second.http.get("/v1/keys", headers=second.auth(victim))).status_code == 401:
                break
            await asyncio.sleep(0.05)
        assert asyncio.get_running_loop().time() - started <= 1.5, (
            "the other process still accepts it"
        )


async def test_background_refreshes_count_in_a_class_of_their_own(tmp_path, fake_model) -> None:
    from backend.settings import RateLimit
    from tests.backend.api.conftest import api_for, make_settings

    settings = make_settings(
        tmp_path,
        fake_model.url,
        rate_limit_default=RateLimit(5, 60),
        rate_limit_background=RateLimit(3, 60),
    )
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        background = {**api.auth(key), "X-Background-Refresh": "1"}
        for left in (2, 1, 0):
            r = await api.http.get("/v1/sessions", headers=background)
            assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == str(left)
        error = assert_error(
            await api.http.get("/v1/sessions", headers=background), 429, "RATE_LIMIT_EXCEEDED"
        )
        assert error["details"]["routeClass"] == "background"
        # The user's own budget is untouched; the header means nothing on other routes.
        r = await api.http.get("/v1/sessions", headers=api.auth(key))
        assert r.headers["x-ratelimit-remaining"] == "4"
        r = await api.http.get("/v1/keys", headers=background)
        assert r.headers["x-ratelimit-remaining"] == "3"
