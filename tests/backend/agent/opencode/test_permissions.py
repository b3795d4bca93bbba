"""engine=opencode honours the session's permission mode like the built-in engine:
OpenCode's permission requests go through the session's gate (the real
``opencode serve`` and the fake model). Mode ``auto`` is covered by
``test_engine.py`` (a bash call runs and nobody is asked). Each end-to-end test
reuses one session (one OpenCode) for several turns: starting OpenCode is the
slow part. The last test pins how a request becomes the gate's tool call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from backend.agent.opencode.permissions import permission_call
from backend.records import ToolCall
from tests.backend.agent.opencode.test_engine import turn
from tests.backend.api.conftest import Api, turn_stream
from tests.backend.api.test_sessions import new_session
from tests.fakes.fake_anthropic import reply

# An OpenCode turn can take long on a loaded machine.
_READ_TIMEOUT = 180.0


async def _patch(api: Api, key: str, sid: str, **body: Any) -> None:
    r = await api.http.patch(f"/v1/sessions/{sid}", json=body, headers=api.auth(key))
    assert r.status_code == 200, r.text


async def _answer(api: Api, key: str, sid: str, request_id: str, decision: str) -> None:
    r = await api.http.post(
        f"/v1/sessions/{sid}/permissions/{request_id}",
        json={"decision": decision},
        headers=api.auth(key),
    )
    assert r.status_code == 200, r.text


async def _turn_answering(
    api: Api,
    key: str,
    sid: str,
    content: str,
    on_request: Callable[[dict[str, Any]], Awaitable[None]],
) -> list[dict[str, Any]]:
    """One turn; ``on_request`` handles each ``permission.requested`` data."""
    seen: list[dict[str, Any]] = []
    async with turn_stream(api, key, sid, content, read_timeout=_READ_TIMEOUT) as events:
        async for event in events:
            seen.append(event)
            if event["type"] == "permission.requested":
                await on_request(event["data"])
            if event["type"] == "session.idle":
                break
    return seen


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in events if e["type"] == kind]


def _last_results(api: Api) -> list[dict[str, Any]]:
    """The tool_result blocks of the model's last request."""
    content = api.model.bodies[-1]["messages"][-1]["content"]
    return [b for b in content if b.get("type") == "tool_result"]


def _workspace(api: Api, sid: str) -> Path:
    return api.settings.data_dir / "sandboxes" / "live" / sid / "workspace"


async def _pending(api: Api, key: str, sid: str) -> list[dict[str, Any]]:
    got = await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))
    return got.json()["pendingPermissions"]


async def test_ask_allow_deny_always_and_read_only(oc_api: Api) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key, engine="opencode")
    await _patch(oc_api, key, sid, permissionMode="ask")
    workspace = _workspace(oc_api, sid)

    # Ask: the first call is allowed; of the next round's two calls the first is denied.
    oc_api.model.enqueue(
        reply().tool_use("bash", {"command": "printf approved > a.txt", "description": "a"}),
        reply()
        .tool_use("write", {"filePath": "b.txt", "content": "no"})
        .tool_use("bash", {"command": "touch c.txt", "description": "c"}),
        reply().text("done"),
    )
    decisions = iter(["allow", "deny", "deny"])

    async def answer(request: dict[str, Any]) -> None:
        assert [p["requestId"] for p in await _pending(oc_api, key, sid)] == [request["requestId"]]
        await _answer(oc_api, key, sid, request["requestId"], next(decisions))

    events = await _turn_answering(oc_api, key, sid, "work", answer)
    requested = _of(events, "permission.requested")
    first = requested[0]
    assert (first["tool"], first["input"]["command"]) == ("shell", "printf approved > a.txt")
    assert set(first) == {"requestId", "messageId", "toolId", "tool", "input", "createdAt"}
    calls = {d["toolId"]: d for d in _of(events, "message.tool") if d["status"] == "calling"}
    assert calls[first["toolId"]]["toolName"] == "bash"
    assert first["messageId"] == calls[first["toolId"]]["messageId"]
    # OpenCode rejects a session's other waiting request along with a denied one: the
    # user is asked about it only if OpenCode asked after the denial (timing).
    assert requested[1]["tool"] in ("write_file", "shell") and len(requested) <= 3
    assert [d["decision"] for d in _of(events, "permission.answered")] == (
        ["allow", "deny", "deny"][: len(requested)]
    )
    assert (workspace / "a.txt").read_text() == "approved"
    assert not (workspace / "b.txt").exists() and not (workspace / "c.txt").exists()
    # The model saw both refusals as tool errors, the user's denial in words, and went on.
    refused = _last_results(oc_api)
    assert len(refused) == 2 and all(r["is_error"] for r in refused), refused
    assert any("Denied: the user did not allow" in str(r["content"]) for r in refused)
    assert events[-2]["data"]["stopReason"] == "end_turn"
    assert await _pending(oc_api, key, sid) == []

    # Always: asked once, then that tool runs without asking.
    oc_api.model.enqueue(
        reply().tool_use("bash", {"command": "echo one", "description": "1"}),
        reply().tool_use("bash", {"command": "echo two", "description": "2"}),
        reply().text("done"),
    )

    async def always(request: dict[str, Any]) -> None:
        await _answer(oc_api, key, sid, request["requestId"], "always")

    events = await _turn_answering(oc_api, key, sid, "twice", always)
    assert len(_of(events, "permission.requested")) == 1
    results = [d for d in _of(events, "message.tool") if d["status"] == "result"]
    assert [r["isError"] for r in results] == [False, False]
    assert "two" in results[1]["result"]

    # Read-only (a PATCH, OpenCode keeps running): edits and bash are refused, unasked.
    await _patch(oc_api, key, sid, permissionMode="read-only")
    oc_api.model.enqueue(
        reply().tool_use(
            "edit", {"filePath": "a.txt", "oldString": "approved", "newString": "changed"}
        ),
        reply().tool_use("bash", {"command": "touch d.txt", "description": "d"}),
        reply().text("ok"),
    )
    events = await turn(oc_api, key, sid, "change it")
    assert not _of(events, "permission.requested")
    results = [d for d in _of(events, "message.tool") if d["status"] == "result"]
    assert [r["isError"] for r in results] == [True, True]
    assert all("session is read-only" in r["result"] for r in results), results
    assert (workspace / "a.txt").read_text() == "approved"
    assert not (workspace / "d.txt").exists()


async def test_thinking_reaches_opencode_and_an_interrupt_denies_a_waiting_request(
    oc_api: Api,
) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key, engine="opencode")
    # With thinking on, OpenCode asks the model for it (the configured budget) and
    # its reasoning streams as thinking events and is stored as a thinking block.
    await _patch(oc_api, key, sid, thinking=True, permissionMode="ask")
    oc_api.model.enqueue(reply().thinking("Nothing to run yet.").text("Fine."))
    events = await turn(oc_api, key, sid, "hello")
    assert events[-2]["data"].get("stopReason") == "end_turn", events[-3:]
    body = oc_api.model.bodies[-1]
    budget = oc_api.settings.thinking_budget_tokens
    assert body["thinking"]["type"] == "enabled"
    assert body["thinking"]["budget_tokens"] == budget < body["max_tokens"]
    thinking = _of(events, "message.thinking")
    assert "".join(d["content"] for d in thinking if d["isPartial"]) == "Nothing to run yet."
    assert [d["content"] for d in thinking if not d["isPartial"]] == ["Nothing to run yet."]
    listed = await oc_api.http.get(f"/v1/sessions/{sid}/messages", headers=oc_api.auth(key))
    blocks = listed.json()["messages"][-1]["blocks"]
    assert [b["type"] for b in blocks] == ["thinking", "text"], blocks

    # An interrupt while a request waits denies it; the command never runs.
    oc_api.model.enqueue(
        reply()
        .thinking("I will touch it.")
        .tool_use("bash", {"command": "touch x.txt", "description": "x"})
    )

    async def interrupt(request: dict[str, Any]) -> None:
        r = await oc_api.http.post(f"/v1/sessions/{sid}/interrupt", headers=oc_api.auth(key))
        assert r.status_code == 200, r.text

    events = await _turn_answering(oc_api, key, sid, "touch it", interrupt)
    [answered] = _of(events, "permission.answered")
    assert answered["decision"] == "deny" and answered["reason"] == "interrupted"
    [complete] = _of(events, "message.complete")
    assert complete["stopReason"] == "interrupted"
    assert not (_workspace(oc_api, sid) / "x.txt").exists()
    assert await _pending(oc_api, key, sid) == []

    # The session goes on in the same OpenCode session.
    oc_api.model.enqueue(reply().thinking("Still here.").text("Yes."))
    events = await turn(oc_api, key, sid, "still there?")
    assert events[-2]["data"].get("stopReason") == "end_turn", events[-3:]
    assert "touch it" in str(oc_api.model.bodies[-1]["messages"])


def _asked(permission: str, call_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "per_1",
        "sessionID": "ses_1",
        "permission": permission,
        "patterns": ["*"],
        "metadata": extra.pop("metadata", {}),
        "always": ["*"],
        "tool": {"messageID": "msg_1", "callID": call_id},
    }


def test_requests_become_the_built_in_engine_tool_calls() -> None:
    tools = {
        "t_bash": ToolCall("t_bash", "bash", {"command": "make", "description": "build"}),
        "t_write": ToolCall("t_write", "write", {"filePath": "a.py", "content": "x"}),
        "t_edit": ToolCall("t_edit", "edit", {"filePath": "a.py", "oldString": "x"}),
        "t_patch": ToolCall("t_patch", "apply_patch", {"patchText": "..."}),
    }
    bash = permission_call(_asked("bash", "t_bash"), tools)
    assert (bash.id, bash.name, bash.arguments) == ("t_bash", "shell", tools["t_bash"].arguments)
    assert permission_call(_asked("edit", "t_write"), tools).name == "write_file"
    assert permission_call(_asked("edit", "t_edit"), tools).name == "edit_file"
    assert permission_call(_asked("edit", "t_patch"), tools).name == "edit_file"
    # What changes nothing keeps OpenCode's name (the gate lets it run).
    outside = permission_call(_asked("external_directory", "t_bash"), tools)
    assert outside.name == "external_directory"
    # A subagent's call is not the turn's: its request says what it would do.
    child = permission_call(_asked("bash", "t_child", metadata={"command": "make all"}), tools)
    assert (child.name, child.arguments) == ("shell", {"command": "make all"})
    edit = permission_call(
        _asked("edit", "t_child2", metadata={"filepath": "/w/a.py", "diff": "@@ ..."}), tools
    )
    assert (edit.name, edit.arguments) == ("edit_file", {"filepath": "/w/a.py"})
