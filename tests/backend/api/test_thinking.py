"""Extended thinking end to end: a per-session setting, thinking streamed as its own
events, and thinking blocks sent back to the API with their signatures."""

from __future__ import annotations

from tests.backend.api.conftest import Api
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import reply


async def _turn(api: Api, key: str, session: str, text: str) -> list[dict]:
    return await collect(
        api,
        "POST",
        f"/v1/sessions/{session}/messages",
        key,
        until="session.idle",
        json={"content": text},
    )


async def test_thinking_streams_as_events_and_round_trips_with_its_signature(api: Api) -> None:
    key = await api.key()
    session = await new_session(api, key)
    r = await api.http.patch(
        f"/v1/sessions/{session}", json={"thinking": True}, headers=api.auth(key)
    )
    assert r.status_code == 200 and r.json()["thinking"] is True
    api.model.enqueue(
        reply()
        .thinking("I should list the files first.")
        .tool_use("shell", {"command": "echo hi"}),
        reply().thinking("The listing worked.").text("Done: hi."),
    )
    events = await _turn(api, key, session, "go")
    thinking = [e["data"] for e in events if e["type"] == "message.thinking"]
    partial = "".join(d["content"] for d in thinking if d["isPartial"])
    finals = [d["content"] for d in thinking if not d["isPartial"]]
    assert finals == ["I should list the files first.", "The listing worked."]
    assert partial == "".join(finals)
    first, second = api.model.bodies[-2:]
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert first["max_tokens"] > 4096
    # The tool loop sent the thinking block back first, unchanged (the fake checks the
    # signature, and would have answered 400 otherwise).
    assistant = second["messages"][-2]
    assert assistant["content"][0]["type"] == "thinking"
    assert assistant["content"][0]["thinking"] == "I should list the files first."
    assert any(e["type"] == "message.complete" for e in events)
    # Stored finished thinking replays; partial fragments do not.
    replay = await collect(
        api,
        "GET",
        f"/v1/sessions/{session}/events",
        key,
        params={"after": 0},
        until="message.complete",
    )
    stored = [e["data"] for e in replay if e["type"] == "message.thinking"]
    assert [d["content"] for d in stored if not d["isPartial"]] == finals
    # The stored message shows the thinking where it happened.
    messages = (
        await api.http.get(f"/v1/sessions/{session}/messages", headers=api.auth(key))
    ).json()["messages"]
    kinds = [b["type"] for b in messages[-1]["blocks"]]
    assert kinds == ["thinking", "tool_use", "thinking", "text"]
    assert messages[-1]["blocks"][0]["text"] == "I should list the files first."
    # The next turn keeps the history valid with thinking off again.
    await api.http.patch(f"/v1/sessions/{session}", json={"thinking": False}, headers=api.auth(key))
    events = await _turn(api, key, session, "again")
    assert "thinking" not in api.model.bodies[-1]
    assert not [e for e in events if e["type"] == "message.thinking"]


async def test_a_model_without_thinking_is_not_asked_to_think(api: Api) -> None:
    key = await api.key()
    session = await new_session(api, key)
    await api.http.patch(
        f"/v1/sessions/{session}",
        json={"thinking": True, "model": "claude-haiku-4-5"},
        headers=api.auth(key),
    )
    events = await _turn(api, key, session, "hello")
    assert "thinking" not in api.model.bodies[-1]
    assert api.model.bodies[-1]["model"] == "claude-haiku-4-5"
    assert events[-1]["type"] == "session.idle"
