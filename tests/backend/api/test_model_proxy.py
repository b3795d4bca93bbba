"""The model proxy route: per-session tokens, the server's key added, the stream
passed through intact, usage recorded. (engine=opencode's own tests are in
tests/backend/agent/opencode.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from backend.model_proxy.forward import UsageReader
from tests.backend.api.conftest import Api, api_for, make_settings
from tests.backend.api.test_sessions import new_session
from tests.fakes.fake_anthropic import FakeAnthropic, reply

SERVER_KEY = "sk-ant-server-only-key"
BODY = {
    "model": "claude-sonnet-5-5",
    "max_tokens": 100,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.fixture
async def proxy_api(tmp_path: Path, fake_model: FakeAnthropic) -> AsyncIterator[Api]:
    fake_model.api_key = SERVER_KEY  # the fake refuses every other key
    settings = make_settings(tmp_path, fake_model.url, anthropic_api_key=SERVER_KEY)
    async with api_for(settings, fake_model) as running:
        yield running


async def test_streams_through_with_the_server_key_and_records_usage(proxy_api: Api) -> None:
    key = await proxy_api.key()
    sid = await new_session(proxy_api, key)
    token = await proxy_api.app.state.model_proxy.tokens.mint(sid, "alice")
    proxy_api.model.enqueue(reply().text("alpha beta gamma", chunks=["alpha ", "beta ", "gamma"]))
    frames: list[str] = []
    async with proxy_api.http.stream(
        "POST", f"/v1/model-proxy/{sid}/v1/messages", json=BODY, headers={"x-api-key": token}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            frames.append(line)
    deltas = [f for f in frames if '"text_delta"' in f]
    assert len(deltas) == 3 and "gamma" in deltas[-1]
    assert frames.count("event: message_stop") == 1
    # The fake saw the server's key, never the token.
    assert proxy_api.model.requests[-1].headers.get("x-api-key") == SERVER_KEY
    # Recorded in a task of its own once the stream has ended: poll for it.
    deadline = asyncio.get_running_loop().time() + 30
    while (
        "proxy.requests"
        not in (usage := await proxy_api.store.usage_summary("alice", session_id=sid)).by_type
    ):
        assert asyncio.get_running_loop().time() < deadline, "usage never recorded"
        await asyncio.sleep(0.05)
    assert usage.by_type["proxy.requests"] == 1
    assert usage.by_type["proxy.tokens.output"] > 0 and usage.by_type["proxy.tokens.input"] > 0


async def test_what_arrived_is_passed_on_while_the_model_stream_waits(proxy_api: Api) -> None:
    """The proxy writes what it has whenever the upstream pauses: it never holds
    chunks back to gather more (the model stops after two deltas and stays open)."""
    key = await proxy_api.key()
    sid = await new_session(proxy_api, key)
    token = await proxy_api.app.state.model_proxy.tokens.mint(sid, "alice")
    proxy_api.model.enqueue(
        reply().text("alpha beta gamma", chunks=["alpha ", "beta ", "gamma"]).hang(after_deltas=2)
    )
    deltas: list[str] = []
    async with asyncio.timeout(60):  # only reached if the two deltas never came
        async with proxy_api.http.stream(
            "POST", f"/v1/model-proxy/{sid}/v1/messages", json=BODY, headers={"x-api-key": token}
        ) as response:
            async for line in response.aiter_lines():
                if '"text_delta"' in line:
                    deltas.append(line)
                    if len(deltas) == 2:
                        break
    assert "alpha" in deltas[0] and "beta" in deltas[1]


async def test_bearer_token_and_plain_json_answers(proxy_api: Api) -> None:
    key = await proxy_api.key()
    sid = await new_session(proxy_api, key)
    token = await proxy_api.app.state.model_proxy.tokens.mint(sid, "alice")
    r = await proxy_api.http.post(
        f"/v1/model-proxy/{sid}/v1/messages",
        json={**BODY, "stream": False},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200 and r.json()["type"] == "message"


async def test_refuses_bad_tokens_other_sessions_paths_and_deleted_sessions(
    proxy_api: Api,
) -> None:
    key = await proxy_api.key()
    one = await new_session(proxy_api, key)
    two = await new_session(proxy_api, key)
    tokens = proxy_api.app.state.model_proxy.tokens
    token_one, token_two = await tokens.mint(one, "alice"), await tokens.mint(two, "alice")

    async def call(sid: str, token: str | None, path: str = "v1/messages") -> httpx.Response:
        headers = {"x-api-key": token} if token else {}
        return await proxy_api.http.post(
            f"/v1/model-proxy/{sid}/{path}", json={**BODY, "stream": False}, headers=headers
        )

    for sid, token in ((one, None), (one, "atp_forged"), (one, token_two), (one, key)):
        r = await call(sid, token)
        assert r.status_code == 401, (sid, token)
        assert r.json() == {
            "type": "error",
            "error": {
                "type": "authentication_error",
                "message": "Invalid or revoked model-proxy token",
            },
        }
    assert (await call(one, token_one, "v1/models")).status_code == 404
    assert (await call(one, token_one)).status_code == 200
    assert (
        await proxy_api.http.delete(f"/v1/sessions/{one}", headers=proxy_api.auth(key))
    ).status_code == 200
    assert (await call(one, token_one)).status_code == 401
    assert (await call(two, token_two)).status_code == 200


def test_usage_reader_takes_start_and_cumulative_delta() -> None:
    reader = UsageReader(streaming=True)
    stream = (
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
        b'{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":3}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":40}}\n\n'
    )
    for i in range(0, len(stream), 7):  # split anywhere
        reader.feed(stream[i : i + 7])
    reader.finish()
    assert (reader.input_tokens, reader.output_tokens, reader.cache_read_tokens) == (12, 40, 3)


async def test_a_conversation_larger_than_max_body_bytes_passes(proxy_api: Api) -> None:
    key = await proxy_api.key()
    sid = await new_session(proxy_api, key)
    token = await proxy_api.app.state.model_proxy.tokens.mint(sid, "alice")
    big = "x" * (proxy_api.settings.max_body_bytes + 1000)
    body = {**BODY, "stream": False, "messages": [{"role": "user", "content": big}]}
    r = await proxy_api.http.post(
        f"/v1/model-proxy/{sid}/v1/messages", json=body, headers={"x-api-key": token}
    )
    assert r.status_code == 200, r.text[:300]
    # Every other route keeps the limit.
    r = await proxy_api.http.post(
        f"/v1/sessions/{sid}/messages", json={"content": big}, headers=proxy_api.auth(key)
    )
    assert r.status_code == 413
