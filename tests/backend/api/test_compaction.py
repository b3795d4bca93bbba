"""Context compaction end to end: automatic at the threshold, on demand, stored so a
restarted server sends the compacted context; the transcript stays whole."""

from __future__ import annotations

import json
from pathlib import Path

from tests.backend.api.conftest import Api, api_for, make_settings
from tests.backend.api.test_health_and_errors import assert_error
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic

SUMMARY = "[Summary of the earlier conversation"
# ~2,000 tokens of output per turn: the 6,000-token threshold is passed within a few turns.
BIG = "run: yes 'line of output' | head -c 8000"


def _settings(tmp_path: Path, fake: FakeAnthropic):
    return make_settings(tmp_path, fake.url, context_window_tokens=8000, compaction_threshold=0.75)


async def _turn(api: Api, key: str, session: str, text: str) -> list[dict]:
    return await collect(
        api,
        "POST",
        f"/v1/sessions/{session}/messages",
        key,
        until="session.idle",
        json={"content": text},
    )


def _first_text(body: dict) -> str:
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else content[0].get("text", "")


def _turn_bodies(fake: FakeAnthropic) -> list[dict]:
    return [b for b in fake.bodies if b.get("stream")]


async def test_compaction_triggers_at_the_threshold_and_survives_a_restart(
    tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    settings = _settings(tmp_path, fake_model)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        session = await new_session(api, key)
        compactions: list[dict] = []
        for i in range(8):
            events = await _turn(api, key, session, f"{BIG} # turn {i}")
            compactions += [e["data"] for e in events if e["type"] == "context.compacted"]
            assert events[-1]["type"] == "session.idle"
            assert not [e for e in events if e["type"] == "error"], events
        assert compactions, "no compaction in 8 large turns"
        first = compactions[0]
        assert first["method"] == "summary" and first["automatic"] is True
        assert first["tokensAfter"] < first["tokensBefore"] <= 8000 * 2
        assert first["tokensSaved"] == first["tokensBefore"] - first["tokensAfter"]
        # Every streamed call stayed under the threshold; calls after the first
        # compaction start from the summary.
        bodies = _turn_bodies(fake_model)
        # (the fake counts a request's input tokens as its JSON bytes / 4, as estimated here)
        assert max(len(json.dumps(b)) // 4 for b in bodies) <= 0.75 * 8000
        assert _first_text(bodies[-1]).startswith(SUMMARY)
        # The transcript clients see is whole: 8 turns, 16 messages.
        messages = (
            await api.http.get(f"/v1/sessions/{session}/messages", headers=api.auth(key))
        ).json()["messages"]
        assert len(messages) == 16
        assert "turn 0" in messages[0]["content"]
    fake_model.requests.clear()
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        events = await _turn(api, key, session, "hello after the restart")
        assert events[-1]["type"] == "session.idle"
        [body] = _turn_bodies(fake_model)
        assert _first_text(body).startswith(SUMMARY)
        assert "turn 0" not in str(body["messages"][1:])


async def test_compaction_on_demand(tmp_path: Path, fake_model: FakeAnthropic) -> None:
    async with api_for(_settings(tmp_path, fake_model), fake_model) as api:
        key = await api.key()
        session = await new_session(api, key)
        empty = await api.http.post(f"/v1/sessions/{session}/compact", headers=api.auth(key))
        assert empty.status_code == 200 and empty.json() == {
            "compacted": False,
            "method": None,
            "tokensBefore": 0,
            "tokensAfter": 0,
            "tokensSaved": 0,
        }
        await _turn(api, key, session, "run: echo one")
        await _turn(api, key, session, "run: echo two")
        r = await api.http.post(f"/v1/sessions/{session}/compact", headers=api.auth(key))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["compacted"] is True and body["method"] == "summary"
        messages = (
            await api.http.get(f"/v1/sessions/{session}/messages", headers=api.auth(key))
        ).json()["messages"]
        [mark] = [b for b in messages[-1]["blocks"] if b["type"] == "compaction"]
        assert mark["tokensBefore"] == body["tokensBefore"] and mark["method"] == "summary"
        events = await collect(
            api,
            "GET",
            f"/v1/sessions/{session}/events",
            key,
            params={"after": 0},
            until="context.compacted",
        )
        assert events[-1]["data"]["automatic"] is False
        await _turn(api, key, session, "and now?")
        body = _turn_bodies(fake_model)[-1]
        assert _first_text(body).startswith(SUMMARY)
        assert "echo one" in _first_text(body)  # the summary kept what the user asked
        assert len(body["messages"]) <= 3


async def test_compact_while_a_turn_runs_is_409(api: Api) -> None:
    from tests.fakes.fake_anthropic import reply

    key = await api.key()
    session = await new_session(api, key)
    api.model.enqueue(reply().text("slow").hang())
    async with api.http.stream(
        "POST", f"/v1/sessions/{session}/messages", headers=api.auth(key), json={"content": "x"}
    ) as stream:
        async for line in stream.aiter_lines():
            if "session.running" in line:
                break
        r = await api.http.post(f"/v1/sessions/{session}/compact", headers=api.auth(key))
        assert_error(r, 409, "SESSION_BUSY")
        await api.http.post(f"/v1/sessions/{session}/interrupt", headers=api.auth(key))
