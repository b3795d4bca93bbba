"""Permission modes end to end: ``ask`` waits for an answer from any client (also
after a server restart), ``deny`` and ``read-only`` give the model tool errors,
``always`` stops asking, an interrupt denies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.backend.api.conftest import Api, api_for, make_settings, turn_stream
from tests.backend.api.test_health_and_errors import assert_error
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic, reply


def _results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a request's last user message."""
    return [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]


async def _set_mode(api: Api, key: str, session: str, mode: str) -> None:
    r = await api.http.patch(
        f"/v1/sessions/{session}", json={"permissionMode": mode}, headers=api.auth(key)
    )
    assert r.status_code == 200 and r.json()["permissionMode"] == mode, r.text


async def _answer(
    url: str, key: str, session: str, request_id: str, decision: str
) -> httpx.Response:
    # A second client: its own connection, as another app or curl would be.
    async with httpx.AsyncClient(base_url=url, timeout=30) as other:
        return await other.post(
            f"/v1/sessions/{session}/permissions/{request_id}",
            json={"decision": decision},
            headers={"Authorization": f"Bearer {key}"},
        )


async def test_ask_mode_allow_and_deny_from_a_second_client(api: Api) -> None:
    key = await api.key()
    session = await new_session(api, key)
    await _set_mode(api, key, session, "ask")
    api.model.enqueue(
        reply().tool_use("read_file", {"path": "missing.txt"}),  # reads are not asked
        reply().tool_use("shell", {"command": "echo approved > a.txt"}),
        reply().tool_use("write_file", {"path": "b.txt", "content": "no"}),
        reply().text("done"),
    )
    decisions = iter(["allow", "deny"])
    seen: list[dict[str, Any]] = []
    async with turn_stream(api, key, session, "work") as events:
        async for event in events:
            seen.append(event)
            if event["type"] == "permission.requested":
                data = event["data"]
                got = (await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))).json()
                assert [p["requestId"] for p in got["pendingPermissions"]] == [data["requestId"]]
                r = await _answer(api.url, key, session, data["requestId"], next(decisions))
                assert r.status_code == 200, r.text
            if event["type"] == "session.idle":
                break
    requested = [e["data"] for e in seen if e["type"] == "permission.requested"]
    assert [(r["tool"], r["input"]) for r in requested] == [
        ("shell", {"command": "echo approved > a.txt"}),
        ("write_file", {"path": "b.txt", "content": "no"}),
    ]
    answered = [e["data"]["decision"] for e in seen if e["type"] == "permission.answered"]
    assert answered == ["allow", "deny"]
    workspace = api.settings.data_dir / "sandboxes" / "live" / session / "workspace"
    assert (workspace / "a.txt").read_text() == "approved\n"
    assert not (workspace / "b.txt").exists()
    # The model saw the denial as a tool error.
    [denied] = _results(api.model.bodies[-1])
    assert denied["is_error"] is True and "Denied" in denied["content"]
    got = (await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))).json()
    assert got["pendingPermissions"] == [] and got["status"] == "idle"
    # Answering again differently is refused; unknown requests are 404.
    again = await _answer(api.url, key, session, requested[0]["requestId"], "deny")
    assert_error(again, 409, "PERMISSION_ALREADY_ANSWERED")
    missing = await _answer(api.url, key, session, "00000000-0000-4000-8000-000000000000", "allow")
    assert_error(missing, 404, "PERMISSION_REQUEST_NOT_FOUND")


async def test_read_only_refuses_mutating_tools_with_a_tool_error(api: Api) -> None:
    key = await api.key()
    session = await new_session(api, key)
    await _set_mode(api, key, session, "read-only")
    api.model.enqueue(
        reply()
        .tool_use("write_file", {"path": "x.txt", "content": "x"})
        .tool_use("list_files", {"path": "."}),
        reply().text("ok"),
    )
    events = await collect(
        api,
        "POST",
        f"/v1/sessions/{session}/messages",
        key,
        until="session.idle",
        json={"content": "try"},
    )
    assert not [e for e in events if e["type"] == "permission.requested"]
    refused, listed = _results(api.model.bodies[-1])
    assert refused["is_error"] is True and "read-only" in refused["content"]
    assert listed["is_error"] is False


async def test_always_stops_asking_and_an_interrupt_denies(api: Api) -> None:
    key = await api.key()
    session = await new_session(api, key)
    await _set_mode(api, key, session, "ask")
    api.model.enqueue(
        reply().tool_use("shell", {"command": "echo 1"}),
        reply().tool_use("shell", {"command": "echo 2"}),
        reply().text("done"),
    )
    seen: list[dict[str, Any]] = []
    async with turn_stream(api, key, session, "go") as events:
        async for event in events:
            seen.append(event)
            if event["type"] == "permission.requested":
                await _answer(api.url, key, session, event["data"]["requestId"], "always")
            if event["type"] == "session.idle":
                break
    assert len([e for e in seen if e["type"] == "permission.requested"]) == 1
    assert all(not r["is_error"] for r in _results(api.model.bodies[-1]))
    # An interrupt while a request waits denies it.
    api.model.enqueue(
        reply().tool_use("edit_file", {"path": "a", "old": "x", "new": "y"}), reply().text("after")
    )
    seen = []
    async with turn_stream(api, key, session, "edit") as events:
        async for event in events:
            seen.append(event)
            if event["type"] == "permission.requested":
                r = await api.http.post(f"/v1/sessions/{session}/interrupt", headers=api.auth(key))
                assert r.status_code == 200
            if event["type"] == "session.idle":
                break
    answered = [e["data"] for e in seen if e["type"] == "permission.answered"]
    assert [(a["decision"], a.get("reason")) for a in answered] == [("deny", "interrupted")]
    complete = [e for e in seen if e["type"] == "message.complete"]
    assert complete[-1]["data"]["stopReason"] == "interrupted"


async def test_a_request_survives_a_server_restart_and_is_answered_after_it(
    tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    settings = make_settings(tmp_path, fake_model.url)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        session = await new_session(api, key)
        await _set_mode(api, key, session, "ask")
        fake_model.enqueue(
            reply().tool_use("shell", {"command": "echo resumed > r.txt"}),
            reply().text("finished after the restart"),
        )
        async with turn_stream(api, key, session, "go") as events:
            async for event in events:
                if event["type"] == "permission.requested":
                    break
    # The server stopped with the request pending.
    async with api_for(settings, fake_model) as api:
        got = (await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))).json()
        [pending] = got["pendingPermissions"]
        assert pending["tool"] == "shell"
        assert got["pendingPermissionCount"] == 1
        listed = (await api.http.get("/v1/sessions", headers=api.auth(key))).json()
        assert listed["sessions"][0]["pendingPermissionCount"] == 1
        after = got["lastEventId"]
        r = await _answer(api.url, key, session, pending["requestId"], "allow")
        assert r.status_code == 200, r.text
        events = await collect(
            api,
            "GET",
            f"/v1/sessions/{session}/events",
            key,
            params={"after": after},
            until="session.idle",
        )
        complete = [e for e in events if e["type"] == "message.complete"]
        assert complete and complete[-1]["data"]["content"].endswith("finished after the restart")
        workspace = settings.data_dir / "sandboxes" / "live" / session / "workspace"
        assert (workspace / "r.txt").read_text() == "resumed\n"
        messages = (
            await api.http.get(f"/v1/sessions/{session}/messages", headers=api.auth(key))
        ).json()["messages"]
        [call] = messages[-1]["toolCalls"]
        assert call["isError"] is False and "exit code: 0" in call["result"]
