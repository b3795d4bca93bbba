"""Sessions end to end through HTTP: the real server, the local sandbox, the real
anthropic SDK against the fake model."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from typing import Any

import httpcore
import httpx
from httpx_sse import aconnect_sse

from tests.backend.api.conftest import Api, api_for, make_settings
from tests.backend.api.test_health_and_errors import assert_error
from tests.fakes.fake_anthropic import reply


async def collect(
    api: Api,
    method: str,
    path: str,
    key: str,
    *,
    until: str | None = None,
    limit: int | None = None,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Read an SSE answer into a list of event dicts (the ``data`` JSON)."""
    events: list[dict[str, Any]] = []
    async with aconnect_sse(
        api.http, method, path, headers={**api.auth(key), **(headers or {})}, **kwargs
    ) as es:
        assert es.response.status_code in (200, 201), (await es.response.aread()).decode()
        async for sse in es.aiter_sse():
            data = json.loads(sse.data)
            assert sse.id == str(data["seq"]) and sse.event == data["type"]
            events.append(data)
            if (until and data["type"] == until) or (limit and len(events) >= limit):
                break
    return events


async def new_session(api: Api, key: str, **body: Any) -> str:
    events = await collect(api, "POST", "/v1/sessions", key, until="session.ready", json=body)
    assert next(e["type"] for e in events) == "session.created"
    assert events[-1]["type"] == "session.ready", events
    return events[0]["sessionId"]


async def raw_get(api: Api, target: str, headers: dict[str, str]) -> tuple[int, str]:
    """GET with the path sent as is (like ``curl --path-as-is``): httpx would drop dot segments."""
    url = httpx.URL(api.url)
    async with httpcore.AsyncConnectionPool() as pool:
        response = await pool.request(
            "GET",
            httpcore.URL(
                scheme=b"http", host=url.host.encode(), port=url.port, target=target.encode()
            ),
            headers=[(k.encode(), v.encode()) for k, v in headers.items()],
        )
        return response.status, response.content.decode()


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_create_returns_starting_then_becomes_idle(api: Api) -> None:
    key = await api.key()
    r = await api.http.post("/v1/sessions", json={"title": "first"}, headers=api.auth(key))
    assert r.status_code == 201, r.text
    session = r.json()
    assert session["status"] == "starting" and session["title"] == "first"
    assert r.headers["location"] == f"/v1/sessions/{session['id']}"
    assert session["sandbox"]["provider"] == "local"
    assert set(session["usage"]) == {"inputTokens", "outputTokens", "sandboxSeconds", "messages"}
    events = await collect(
        api, "GET", f"/v1/sessions/{session['id']}/events?after=0", key, until="session.ready"
    )
    assert types(events)[0] == "session.created"
    assert "session.progress" in types(events)
    got = (await api.http.get(f"/v1/sessions/{session['id']}", headers=api.auth(key))).json()
    assert got["status"] == "idle" and got["sandbox"]["state"] == "ready" and got["sandbox"]["id"]


async def test_create_with_progress_stream(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key, title="streamed")
    assert (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()[
        "status"
    ] == "idle"
    # An empty body is allowed.
    r = await api.http.post("/v1/sessions", headers=api.auth(key))
    assert r.status_code == 201


async def test_turn_with_shell_tool_then_file_read_back(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(
        reply()
        .text("I will write the file.")
        .tool_use("shell", {"command": "echo hello from the agent > out.txt"}),
        reply().text("Done: out.txt holds the greeting."),
    )
    events = await collect(
        api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "write a file"}
    )
    kinds = types(events)
    assert (
        kinds[0] == "session.running" and kinds[1] == "message.user" and kinds[-1] == "session.idle"
    )
    assert kinds[-2] == "message.complete"
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    partial = [
        e["data"]["content"]
        for e in events
        if e["type"] == "message.assistant" and e["data"]["isPartial"]
    ]
    finals = [
        e["data"]["content"]
        for e in events
        if e["type"] == "message.assistant" and not e["data"]["isPartial"]
    ]
    assert "".join(partial) == "I will write the file.Done: out.txt holds the greeting."
    assert finals == ["I will write the file.", "Done: out.txt holds the greeting."]
    tools = [e["data"] for e in events if e["type"] == "message.tool"]
    assert [t["status"] for t in tools] == ["calling", "result"]
    assert tools[0]["toolName"] == "shell" and tools[1]["isError"] is False
    complete = events[-2]["data"]
    assert complete["stopReason"] == "end_turn" and complete["role"] == "assistant"
    assert set(complete["usage"]) == {"inputTokens", "outputTokens", "cacheReadTokens"}

    r = await api.http.get(f"/v1/sessions/{sid}/files/out.txt", headers=api.auth(key))
    assert r.status_code == 200 and r.text == "hello from the agent\n"
    assert r.headers["content-type"].startswith("text/plain")
    listing = (await api.http.get(f"/v1/sessions/{sid}/files/", headers=api.auth(key))).json()[
        "files"
    ]
    assert {"name": "out.txt", "path": "out.txt", "isDirectory": False, "size": 21} in listing

    messages = (await api.http.get(f"/v1/sessions/{sid}/messages", headers=api.auth(key))).json()
    assert [m["role"] for m in messages["messages"]] == ["user", "assistant"]
    assistant = messages["messages"][1]
    call = assistant["toolCalls"][0]
    assert call["name"] == "shell" and call["isError"] is False and call["result"] is not None
    assert call["arguments"] == {"command": "echo hello from the agent > out.txt"}
    assert assistant["stopReason"] == "end_turn" and assistant["content"].startswith(
        "I will write the file."
    )
    session = (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()
    assert session["usage"]["messages"] == 2 and session["usage"]["inputTokens"] > 0

    usage = (await api.http.get("/v1/usage", headers=api.auth(key))).json()
    assert usage["byType"]["message.sent"] == 1 and usage["byType"]["tokens.output"] > 0
    assert usage["byType"]["session.created"] == 1


async def test_reconnect_with_last_event_id_gets_every_event_once(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    words = [f"w{i} " for i in range(60)]
    api.model.enqueue(reply().text("".join(words), chunks=words).delay(0.01))
    first = await collect(
        api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "go"}, limit=10
    )
    last_id = first[-1]["seq"]
    rest = await collect(
        api,
        "GET",
        f"/v1/sessions/{sid}/events",
        key,
        until="session.idle",
        headers={"Last-Event-ID": str(last_id)},
    )
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "every event exactly once, in order"
    text = "".join(
        e["data"]["content"]
        for e in first + rest
        if e["type"] == "message.assistant" and e["data"]["isPartial"]
    )
    assert text == "".join(words)
    # ?after= works the same and replays from memory and store.
    replay = await collect(
        api, "GET", f"/v1/sessions/{sid}/events?after={last_id}", key, until="session.idle"
    )
    assert [e["seq"] for e in replay] == [e["seq"] for e in rest]
    # A malformed Last-Event-ID is a 400.
    r = await api.http.get(
        f"/v1/sessions/{sid}/events", headers={**api.auth(key), "Last-Event-ID": "x"}
    )
    assert_error(r, 400, "VALIDATION_ERROR")


def _processes_with(marker: str) -> list[str]:
    out = subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]


async def test_interrupt_kills_the_running_command(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    marker = "sleep 313.25"
    api.model.enqueue(reply().tool_use("shell", {"command": f"{marker}; echo never"}))
    events: list[dict[str, Any]] = []

    async def run_turn() -> None:
        events.extend(
            await collect(
                api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "sleep"}
            )
        )

    turn = asyncio.create_task(run_turn())
    for _ in range(200):
        if _processes_with(marker):
            break
        await asyncio.sleep(0.05)
    assert _processes_with(marker), "the command should be running"
    r = await api.http.post(f"/v1/sessions/{sid}/interrupt", headers=api.auth(key))
    assert r.status_code == 200
    await asyncio.wait_for(turn, 20)
    assert types(events)[-2:] == ["message.complete", "session.idle"]
    assert events[-2]["data"]["stopReason"] == "interrupted"
    assert not _processes_with(marker), "no process survives an interrupt"
    # Idempotent, and the session works afterwards (the conversation stays valid).
    assert (
        await api.http.post(f"/v1/sessions/{sid}/interrupt", headers=api.auth(key))
    ).status_code == 200
    api.model.enqueue(reply().text("still here"))
    after = await collect(
        api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "hello?"}
    )
    assert after[-2]["data"]["content"] == "still here"


async def test_second_message_while_running_is_busy(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(reply().text("slow answer " * 5).delay(0.1))
    turn = asyncio.create_task(
        collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "a"})
    )
    for _ in range(100):
        if (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()[
            "status"
        ] == "running":
            break
        await asyncio.sleep(0.02)
    r = await api.http.post(
        f"/v1/sessions/{sid}/messages", json={"content": "b"}, headers=api.auth(key)
    )
    error = assert_error(r, 409, "SESSION_BUSY")
    assert error["details"]["status"] == "running"
    assert_error(
        await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key)), 409, "SESSION_BUSY"
    )
    await asyncio.wait_for(turn, 20)


async def test_pause_resume_keeps_the_workspace(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(
        reply().tool_use("write_file", {"path": "notes/a.md", "content": "kept"}),
        reply().text("ok"),
    )
    await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "write"})
    paused = await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key))
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert paused.json()["sandbox"]["state"] == "paused"
    assert (await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key))).json()[
        "status"
    ] == "paused"
    resumed = await api.http.post(f"/v1/sessions/{sid}/resume", headers=api.auth(key))
    assert resumed.json()["status"] == "idle" and resumed.json()["sandbox"]["state"] == "ready"
    assert (
        await api.http.get(f"/v1/sessions/{sid}/files/notes/a.md", headers=api.auth(key))
    ).text == "kept"
    # A message to a paused session resumes it first.
    await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key))
    api.model.enqueue(
        reply().tool_use("read_file", {"path": "notes/a.md"}), reply().text("read it")
    )
    events = await collect(
        api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "read"}
    )
    assert "session.resumed" in types(events)
    result = next(
        e for e in events if e["type"] == "message.tool" and e["data"]["status"] == "result"
    )
    assert "kept" in result["data"]["result"] and not result["data"]["isError"]
    usage = (await api.http.get("/v1/usage", headers=api.auth(key))).json()
    assert usage["byType"].get("sandbox.seconds", 0) > 0


async def test_delete_keeps_history_and_is_idempotent(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(reply().text("hi"))
    await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "hello"})
    r = await api.http.delete(f"/v1/sessions/{sid}", headers=api.auth(key))
    assert r.status_code == 200 and r.json()["status"] == "terminated"
    assert (await api.http.delete(f"/v1/sessions/{sid}", headers=api.auth(key))).json()[
        "status"
    ] == "terminated"
    messages = (await api.http.get(f"/v1/sessions/{sid}/messages", headers=api.auth(key))).json()[
        "messages"
    ]
    assert len(messages) == 2
    r = await api.http.post(
        f"/v1/sessions/{sid}/messages", json={"content": "again"}, headers=api.auth(key)
    )
    assert_error(r, 409, "SESSION_TERMINATED")
    assert_error(
        await api.http.get(f"/v1/sessions/{sid}/files/", headers=api.auth(key)),
        409,
        "SESSION_TERMINATED",
    )
    assert (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()[
        "status"
    ] == "terminated"


async def test_other_users_sessions_are_not_found(api: Api) -> None:
    alice, bob = await api.key("alice"), await api.key("bob")
    sid = await new_session(api, alice)
    for method, path in (
        ("GET", f"/v1/sessions/{sid}"),
        ("GET", f"/v1/sessions/{sid}/messages"),
        ("GET", f"/v1/sessions/{sid}/files/"),
        ("GET", f"/v1/sessions/{sid}/events"),
        ("GET", f"/v1/sessions/{sid}/logs"),
        ("DELETE", f"/v1/sessions/{sid}"),
        ("POST", f"/v1/sessions/{sid}/pause"),
        ("POST", f"/v1/sessions/{sid}/interrupt"),
    ):
        assert_error(
            await api.http.request(method, path, headers=api.auth(bob)), 404, "SESSION_NOT_FOUND"
        )
    r = await api.http.post(
        f"/v1/sessions/{sid}/messages", json={"content": "x"}, headers=api.auth(bob)
    )
    assert_error(r, 404, "SESSION_NOT_FOUND")
    r = await api.http.get("/v1/usage", params={"sessionId": sid}, headers=api.auth(bob))
    assert_error(r, 404, "SESSION_NOT_FOUND")
    assert (await api.http.get("/v1/sessions", headers=api.auth(bob))).json()["sessions"] == []
    missing = "00000000-0000-4000-8000-000000000000"
    assert_error(
        await api.http.get(f"/v1/sessions/{missing}", headers=api.auth(alice)),
        404,
        "SESSION_NOT_FOUND",
    )
    assert_error(
        await api.http.get("/v1/sessions/nope", headers=api.auth(alice)), 400, "VALIDATION_ERROR"
    )


async def test_file_paths_cannot_escape(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(
        reply().tool_use("shell", {"command": "ln -s /etc/passwd link"}), reply().text("ok")
    )
    await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "link"})
    for path in (
        "../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "link",
        "a/../../x",
        "%2Fetc%2Fpasswd",
    ):
        status, body = await raw_get(api, f"/v1/sessions/{sid}/files/{path}", api.auth(key))
        assert status == 400, (path, status, body)
        assert "root:" not in body and json.loads(body)["error"]["code"] == "VALIDATION_ERROR"
    assert_error(
        await api.http.get(f"/v1/sessions/{sid}/files/missing.txt", headers=api.auth(key)),
        404,
        "FILE_NOT_FOUND",
    )


async def test_the_files_api_hides_agent_tui(api: Api) -> None:
    """``.agent-tui/`` (OpenCode's data, service sockets) is agent-tui's own: not
    listed, and reading or listing it answers 400 saying why."""
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(
        reply().tool_use(
            "shell",
            {
                "command": "mkdir -p .agent-tui && echo s > .agent-tui/opencode-session && echo v > v.txt"
            },
        ),
        reply().text("ok"),
    )
    await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "go"})
    for listing in ("", "./"):
        root = await api.http.get(f"/v1/sessions/{sid}/files/{listing}", headers=api.auth(key))
        assert [f["name"] for f in root.json()["files"]] == ["v.txt"], root.text
    for path in (".agent-tui", ".agent-tui/", ".agent-tui/opencode-session", "./.agent-tui//x"):
        status, body = await raw_get(api, f"/v1/sessions/{sid}/files/{path}", api.auth(key))
        error = json.loads(body)["error"]
        assert (status, error["code"]) == (400, "VALIDATION_ERROR"), (path, body)
        assert error["message"].startswith(".agent-tui/ holds agent-tui's own files"), body
        assert error["details"]["path"].startswith(".agent-tui")


async def test_model_error_ends_the_turn_and_the_session_stays_usable(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(reply().http_error(429, should_retry=False))
    events = await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "a"})
    assert types(events)[-2:] == ["error", "session.idle"]
    assert events[-2]["data"]["code"] == "MODEL_RATE_LIMITED"
    assert "test-key" not in json.dumps(events)
    api.model.enqueue(reply().text("recovered"))
    events = await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "b"})
    assert events[-2]["data"]["content"] == "recovered"
    # The failed turn's user message is in the conversation sent to the model, merged validly.
    assert api.model.bodies[-1]["messages"][0]["role"] == "user"


async def test_message_validation(api: Api) -> None:
    key = await api.key()
    sid = await new_session(api, key)
    for body in (
        {},
        {"content": ""},
        {"content": "x" * 100_001},
        {"content": 5},
        {"content": "x", "extra": 1},
    ):
        r = await api.http.post(f"/v1/sessions/{sid}/messages", json=body, headers=api.auth(key))
        assert_error(r, 400, "VALIDATION_ERROR")
    r = await api.http.post("/v1/sessions", json={"repo": "not a repo"}, headers=api.auth(key))
    assert_error(r, 400, "VALIDATION_ERROR")


async def test_list_sessions_pages_and_filters(api: Api) -> None:
    key = await api.key()
    ids = []
    for i in range(5):
        r = await api.http.post("/v1/sessions", json={"title": f"s{i}"}, headers=api.auth(key))
        ids.append(r.json()["id"])
    page = (await api.http.get("/v1/sessions?limit=2", headers=api.auth(key))).json()
    assert [s["id"] for s in page["sessions"]] == ids[::-1][:2]
    seen = [s["id"] for s in page["sessions"]]
    while page["nextCursor"]:
        page = (
            await api.http.get(
                f"/v1/sessions?limit=2&cursor={page['nextCursor']}", headers=api.auth(key)
            )
        ).json()
        seen += [s["id"] for s in page["sessions"]]
    assert seen == ids[::-1]
    await api.http.delete(f"/v1/sessions/{ids[0]}", headers=api.auth(key))
    terminated = (
        await api.http.get("/v1/sessions?status=terminated", headers=api.auth(key))
    ).json()["sessions"]
    assert [s["id"] for s in terminated] == [ids[0]]
    assert_error(
        await api.http.get("/v1/sessions?status=bogus", headers=api.auth(key)),
        400,
        "VALIDATION_ERROR",
    )
    assert_error(
        await api.http.get("/v1/sessions?limit=101", headers=api.auth(key)), 400, "VALIDATION_ERROR"
    )
    assert_error(
        await api.http.get("/v1/sessions?cursor=%%%", headers=api.auth(key)),
        400,
        "VALIDATION_ERROR",
    )
    r = await api.http.patch(
        f"/v1/sessions/{ids[1]}", json={"title": "renamed"}, headers=api.auth(key)
    )
    assert r.json()["title"] == "renamed"


async def test_active_session_limit(tmp_path, fake_model) -> None:
    settings = make_settings(tmp_path, fake_model.url, max_active_sessions=2)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        for _ in range(2):
            assert (await api.http.post("/v1/sessions", headers=api.auth(key))).status_code == 201
        r = await api.http.post("/v1/sessions", headers=api.auth(key))
        error = assert_error(r, 429, "SESSION_LIMIT_EXCEEDED")
        assert error["details"]["limit"] == 2


async def test_restarted_server_continues_the_conversation(tmp_path, fake_model) -> None:
    settings = make_settings(tmp_path, fake_model.url)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        sid = await new_session(api, key)
        api.model.enqueue(
            reply().tool_use("shell", {"command": "echo 41 > n"}), reply().text("saved 41")
        )
        first = await collect(
            api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "remember 41"}
        )
    async with api_for(settings, fake_model) as api:
        api.model.enqueue(reply().text("it was 41"))
        events = await collect(
            api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "what was it?"}
        )
        assert events[0]["seq"] == first[-1]["seq"] + 1, "numbering continues after a clean restart"
        sent = api.model.bodies[-1]["messages"]
        assert sent[0]["content"][0]["text"] == "remember 41"
        assert any(
            b.get("type") == "tool_result"
            for m in sent
            for b in (m["content"] if isinstance(m["content"], list) else [])
        )
        assert sent[-1]["content"][0]["text"] == "what was it?"
        assert (
            await api.http.get(f"/v1/sessions/{sid}/files/n", headers=api.auth(key))
        ).text == "41\n"
        logs = (
            await api.http.get(f"/v1/sessions/{sid}/logs?tail=50", headers=api.auth(key))
        ).json()["logs"]
        assert logs and all(isinstance(line, str) for line in logs)


async def test_keepalive_comments_on_idle_streams(tmp_path, fake_model) -> None:
    settings = make_settings(tmp_path, fake_model.url, keepalive_seconds=0.2)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        sid = (await api.http.post("/v1/sessions", headers=api.auth(key))).json()["id"]
        await asyncio.sleep(0.3)
        lines: list[str] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async with api.http.stream(
                    "GET", f"/v1/sessions/{sid}/events", headers=api.auth(key)
                ) as r:
                    async for line in r.aiter_lines():
                        lines.append(line)
        assert lines.count(": keepalive") >= 2


async def test_slow_follower_is_told_to_resync(tmp_path, fake_model) -> None:
    settings = make_settings(tmp_path, fake_model.url, follower_queue_size=5)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        sid = await new_session(api, key)
        actor = await api.services.registry.get(sid, "alice")
        follower = actor.events.subscribe()
        for i in range(20):
            await actor.events.publish(
                "message.assistant", {"messageId": "m", "content": f"{i}", "isPartial": True}
            )
        frames = [
            f
            async for f in actor.events.frames(
                actor.events.last_seq - 20, keepalive=1, follower=follower
            )
        ]
        # Replay covers the buffer, then the overflowed queue turns into one resync frame.
        assert frames[-1].startswith(b"id: ") and b"stream.resync" in frames[-1]


async def test_idle_sandbox_pauses_itself_and_the_actor_leaves_memory(tmp_path, fake_model) -> None:
    settings = make_settings(
        tmp_path, fake_model.url, sandbox_idle_pause_seconds=0.6, actor_idle_evict_seconds=0.6
    )
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        sid = await new_session(api, key)
        api.model.enqueue(
            reply().tool_use("write_file", {"path": "kept.txt", "content": "yes"}),
            reply().text("ok"),
        )
        await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "write"})
        registry = api.services.registry
        for _ in range(100):
            if registry.loaded_actor(sid) is None:
                break
            await asyncio.sleep(0.1)
        assert registry.loaded_actor(sid) is None, "paused, idle actor evicted"
        session = (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()
        assert session["status"] == "paused" and session["sandbox"]["state"] == "paused"
        assert session["usage"]["sandboxSeconds"] > 0
        # The next message rebuilds the actor from the store and resumes the sandbox.
        api.model.enqueue(reply().tool_use("read_file", {"path": "kept.txt"}), reply().text("read"))
        events = await collect(
            api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "read"}
        )
        result = next(
            e for e in events if e["type"] == "message.tool" and e["data"]["status"] == "result"
        )
        assert "yes" in result["data"]["result"]
        assert "session.resumed" in types(events)


async def test_a_crash_between_tool_use_and_result_leaves_the_session_usable(
    tmp_path, fake_model
) -> None:
    settings = make_settings(tmp_path, fake_model.url)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        sid = await new_session(api, key)
        api.model.enqueue(reply().tool_use("shell", {"command": "true"}), reply().text("done"))
        await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "go"})
        # What a crash after the model asked for a tool, before its result, leaves stored.
        assistant = (await api.store.list_messages(sid))[-1]
        await api.store.update_message(
            assistant.id, {"model_messages": assistant.model_messages[:1]}
        )
        await api.store.update_session(sid, {"status": "running"})
    async with api_for(settings, fake_model) as api:
        api.model.enqueue(reply().text("fine"))
        events = await collect(
            api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "again"}
        )
        assert events[-2]["data"]["content"] == "fine", events[-3:]
        # The fake validates like the real API: every tool_use was answered.
        sent = api.model.bodies[-1]["messages"]
        assert sent[1]["role"] == "assistant" and sent[2]["content"][0]["type"] == "tool_result"
