"""engine=opencode end to end: the real ``opencode serve`` in a local sandbox
(bubblewrap, no network), reached over the relay, its model calls through the
model proxy to the fake model, which accepts only the server's key."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.backend.agent.opencode.conftest import SECRET_KEY
from tests.backend.api.conftest import Api
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import reply


async def turn(api: Api, key: str, sid: str, content: str) -> list[dict[str, Any]]:
    return await collect(
        api,
        "POST",
        f"/v1/sessions/{sid}/messages",
        key,
        until="session.idle",
        json={"content": content},
        timeout=180,
    )


def data(events: list[dict[str, Any]], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in events if e["type"] == kind]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_a_turn_streams_text_and_runs_a_tool(oc_api: Api) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key, engine="opencode")
    session = (await oc_api.http.get(f"/v1/sessions/{sid}", headers=oc_api.auth(key))).json()
    assert session["engine"] == "opencode"
    oc_api.model.enqueue(
        reply().text("Let me write it.").tool_use(
            "bash",
            {"command": "printf 'print(6*7)' > calc.py && python3 calc.py", "description": "run"},
        ),
        reply().text("It printed 42.", chunks=["It ", "printed ", "42."]),
    )
    events = await turn(oc_api, key, sid, "Write calc.py and run it")
    kinds = types(events)
    assert kinds[0] == "session.running" and kinds[-1] == "session.idle", kinds
    partial = [d for t, d in data(events, "message.assistant") if d["isPartial"]]
    assert "".join(d["content"] for d in partial) == "Let me write it.It printed 42."
    tools = [d for _, d in data(events, "message.tool")]
    assert [t["status"] for t in tools] == ["calling", "result"], tools
    assert tools[0]["toolName"] == "bash" and "42" in tools[1]["result"]
    complete = next(d for _, d in data(events, "message.complete"))
    assert complete["stopReason"] == "end_turn"
    assert complete["usage"]["outputTokens"] > 0
    # The file is in the workspace, seen through the files API.
    got = await oc_api.http.get(f"/v1/sessions/{sid}/files/calc.py", headers=oc_api.auth(key))
    assert got.status_code == 200 and "6*7" in got.text
    # Every model call went through the proxy, which added the real key (the fake
    # accepts no other) and recorded usage for the session.
    usage = await oc_api.store.usage_summary("alice", session_id=sid)
    assert usage.by_type.get("proxy.requests", 0) >= 2
    assert usage.by_type.get("proxy.tokens.output", 0) > 0
