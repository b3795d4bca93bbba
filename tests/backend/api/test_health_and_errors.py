"""Health routes, the OpenAPI document, request ids and the one error shape."""

from __future__ import annotations

import json

import httpx

from tests.backend.api.conftest import Api


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


async def test_health_and_ready(api: Api) -> None:
    r = await api.http.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["version"] and body["timestamp"].endswith("Z")
    r = await api.http.get("/health/ready")
    assert r.status_code == 200 and r.json()["status"] == "ok"


async def test_openapi_and_docs(api: Api) -> None:
    doc = (await api.http.get("/openapi.json")).json()
    for path in ("/v1/keys", "/v1/sessions", "/v1/sessions/{session_id}/events", "/v1/usage"):
        assert path in doc["paths"]
    events = doc["paths"]["/v1/sessions/{session_id}/events"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in events
    r = await api.http.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]


async def test_request_id_is_echoed_or_generated(api: Api) -> None:
    r = await api.http.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await api.http.get("/health", headers={"X-Request-ID": "bad id; with spaces"})
    assert (
        r.headers["x-request-id"] != "bad id; with spaces" and len(r.headers["x-request-id"]) == 32
    )
    r = await api.http.get("/health", headers={"X-Request-ID": "x" * 500})
    assert len(r.headers["x-request-id"]) == 32
    r = await api.http.get("/nope")
    assert r.headers["x-request-id"]


async def test_unknown_route_and_method(api: Api) -> None:
    assert_error(await api.http.get("/nope"), 404, "NOT_FOUND")
    assert_error(await api.http.put("/health"), 405, "METHOD_NOT_ALLOWED")


async def test_malformed_and_invalid_bodies(api: Api) -> None:
    key = await api.key()
    h = {**api.auth(key), "content-type": "application/json"}
    error = assert_error(
        await api.http.post("/v1/keys", content=b"{not json", headers=h), 400, "VALIDATION_ERROR"
    )
    assert "JSON" in error["message"]
    assert_error(
        await api.http.post("/v1/keys", json={"name": 5}, headers=h), 400, "VALIDATION_ERROR"
    )
    error = assert_error(
        await api.http.post("/v1/keys", json={"name": "x", "bogus": 1}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert any(p["field"] == "bogus" for p in error["details"]["problems"])
    assert_error(await api.http.post("/v1/keys", json=[1, 2], headers=h), 400, "VALIDATION_ERROR")
    assert_error(await api.http.delete("/v1/keys/not-a-uuid", headers=h), 400, "VALIDATION_ERROR")


async def test_payload_too_large_declared_and_chunked(api: Api) -> None:
    key = await api.key()
    big = json.dumps({"name": "x" * (2 * 1024 * 1024)}).encode()
    error = assert_error(
        await api.http.post("/v1/keys", content=big, headers=api.auth(key)),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert error["details"]["limitBytes"] == 1024 * 1024

    async def chunks():
        for _ in range(40):
            yield b"x" * 65536

    r = await api.http.post("/v1/keys", content=chunks(), headers=api.auth(key))
    assert_error(r, 413, "PAYLOAD_TOO_LARGE")
    # Nothing was created by either request.
    keys = (await api.http.get("/v1/keys", headers=api.auth(key))).json()["keys"]
    assert len(keys) == 1


async def test_unhandled_error_leaks_nothing(api: Api, monkeypatch) -> None:
    key = await api.key()

    async def broken(user_id: str):
        raise RuntimeError("SELECT secret_column FROM internal_table")

    monkeypatch.setattr(api.store, "list_keys", broken)
    r = await api.http.get("/v1/keys", headers=api.auth(key))
    error = assert_error(r, 500, "INTERNAL_ERROR")
    assert "secret" not in r.text and "SELECT" not in r.text and "Traceback" not in r.text
    assert error["message"] == "Internal server error"
    assert r.headers["x-request-id"]


async def test_every_response_names_the_replica(tmp_path, fake_model) -> None:
    from tests.backend.api.conftest import api_for, make_settings

    settings = make_settings(tmp_path, fake_model.url, replica_id="eu-1.a")
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        too_large = await api.http.post(
            "/v1/keys", content=b"x" * (2 * 1024 * 1024), headers=api.auth(key)
        )
        for response in (
            await api.http.get("/health"),
            await api.http.get("/nope"),
            await api.http.get("/v1/keys"),  # 401
            too_large,  # answered by the middleware itself
        ):
            assert response.headers["x-replica-id"] == "eu-1.a", response


async def test_ready_reports_each_dependency(api: Api) -> None:
    r = await api.http.get("/health/ready")
    # No REDIS_URL: the database is the one dependency.
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok"}
