"""Model choice: ``GET /v1/models`` (listed, cached, configured fallback) and
``PATCH /v1/sessions/{id}`` with ``model``, used by the next turn."""

from __future__ import annotations

from pathlib import Path

from tests.backend.api.conftest import Api, api_for, make_settings
from tests.backend.api.test_health_and_errors import assert_error
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic, fake_model


def _model_requests(fake: FakeAnthropic) -> int:
    return sum(1 for r in fake.requests if r.path == "/v1/models")


async def test_models_are_listed_from_the_endpoint_and_cached(api: Api) -> None:
    key = await api.key()
    first = await api.http.get("/v1/models", headers=api.auth(key))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["source"] == "endpoint"
    assert body["default"] == api.settings.anthropic_model
    by_id = {m["id"]: m for m in body["models"]}
    assert by_id["claude-sonnet-4-6"]["thinking"] is True
    assert by_id["claude-sonnet-4-6"]["displayName"] == "Claude Sonnet 4.6"
    assert by_id["claude-haiku-4-5"]["thinking"] is False
    assert by_id["claude-haiku-4-5"]["contextWindow"] == 200_000
    second = await api.http.get("/v1/models", headers=api.auth(key))
    assert second.json() == body
    assert _model_requests(api.model) == 1  # the second answer came from the cache


async def test_an_endpoint_without_models_route_offers_the_configured_list(
    tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    fake_model.models = None  # GET /v1/models answers 404
    settings = make_settings(
        tmp_path, fake_model.url, anthropic_models=("model-a", "model-b"), anthropic_model="model-a"
    )
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        body = (await api.http.get("/v1/models", headers=api.auth(key))).json()
        assert body["source"] == "configured"
        assert [m["id"] for m in body["models"]] == ["model-a", "model-b"]
        # With a configured list any model name is accepted (the list may not be exhaustive).
        session = await new_session(api, key)
        r = await api.http.patch(
            f"/v1/sessions/{session}", json={"model": "model-z"}, headers=api.auth(key)
        )
        assert r.status_code == 200 and r.json()["model"] == "model-z"


async def test_patch_model_applies_to_the_next_turn_and_is_announced(api: Api) -> None:
    api.model.models = [fake_model("claude-sonnet-4-6"), fake_model("claude-opus-4-8")]
    key = await api.key()
    session = await new_session(api, key)
    await collect(
        api,
        "POST",
        f"/v1/sessions/{session}/messages",
        key,
        until="session.idle",
        json={"content": "one"},
    )
    r = await api.http.patch(
        f"/v1/sessions/{session}", json={"model": "claude-opus-4-8"}, headers=api.auth(key)
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "claude-opus-4-8"
    events = await collect(
        api,
        "POST",
        f"/v1/sessions/{session}/messages",
        key,
        until="session.idle",
        json={"content": "two"},
    )
    assert api.model.bodies[-1]["model"] == "claude-opus-4-8"
    assert api.model.bodies[0]["model"] != "claude-opus-4-8"
    # Stored: a GET (and a restarted server) sees it; the change was an event.
    assert (await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))).json()[
        "model"
    ] == "claude-opus-4-8"
    replay = await collect(
        api,
        "GET",
        f"/v1/sessions/{session}/events",
        key,
        params={"after": 0},
        until="session.updated",
    )
    updated = [e for e in replay if e["type"] == "session.updated"]
    assert updated and updated[0]["data"]["model"] == "claude-opus-4-8"
    assert events[-1]["type"] == "session.idle"


async def test_patch_refuses_an_unknown_model_and_an_empty_body(api: Api) -> None:
    key = await api.key()
    session = await new_session(api, key)
    r = await api.http.patch(
        f"/v1/sessions/{session}", json={"model": "no-such-model"}, headers=api.auth(key)
    )
    error = assert_error(r, 400, "VALIDATION_ERROR")
    assert "claude-sonnet-4-6" in error["details"]["models"]
    assert_error(
        await api.http.patch(f"/v1/sessions/{session}", json={}, headers=api.auth(key)),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        await api.http.patch(
            f"/v1/sessions/{session}", json={"permissionMode": "yolo"}, headers=api.auth(key)
        ),
        400,
        "VALIDATION_ERROR",
    )
    got = (await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))).json()
    assert got["model"] == api.settings.anthropic_model
    assert got["permissionMode"] == "auto" and got["thinking"] is False
