"""engine=opencode end to end: the real ``opencode serve`` in a local sandbox
(bubblewrap, no network), reached over the relay, its model calls through the
model proxy to the fake model, which accepts only the server's key."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

import httpx

from backend.agent.loop import AgentLoop
from backend.agent.opencode import OpenCodeEngine
from backend.agent.opencode.config import ADAPTIVE_THINKING_VARIANT, THINKING_VARIANT
from backend.model_proxy import ProxyTokens
from backend.store.sqlite import SqliteStore
from tests.backend.agent.opencode.conftest import SECRET_KEY
from tests.backend.api.conftest import Api, make_settings
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import DEFAULT_MODELS, FakeAnthropic, reply
from tests.fakes.fake_anthropic import fake_model as model_listing


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


async def write_and_run_turn(api: Api, key: str, sid: str) -> list[dict[str, Any]]:
    """A turn whose model writes calc.py with OpenCode's bash tool and runs it; checks
    the text streamed and the tool's two events, returns the turn's events."""
    api.model.enqueue(
        reply()
        .text("Let me write it.")
        .tool_use(
            "bash",
            {"command": "printf 'print(6*7)' > calc.py && python3 calc.py", "description": "run"},
        ),
        reply().text("It printed 42.", chunks=["It ", "printed ", "42."]),
    )
    events = await turn(api, key, sid, "Write calc.py and run it")
    kinds = types(events)
    assert kinds[0] == "session.running" and kinds[-1] == "session.idle", kinds
    partial = [d for t, d in data(events, "message.assistant") if d["isPartial"]]
    assert "".join(d["content"] for d in partial) == "Let me write it.It printed 42."
    tools = [d for _, d in data(events, "message.tool")]
    assert [t["status"] for t in tools] == ["calling", "result"], tools
    assert tools[0]["toolName"] == "bash" and "42" in tools[1]["result"]
    return events


def data(events: list[dict[str, Any]], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["type"], e["data"]) for e in events if e["type"] == kind]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_a_turn_streams_text_and_runs_a_tool(oc_api: Api) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key, engine="opencode")
    session = (await oc_api.http.get(f"/v1/sessions/{sid}", headers=oc_api.auth(key))).json()
    assert session["engine"] == "opencode"
    events = await write_and_run_turn(oc_api, key, sid)
    kinds = types(events)
    # Mode auto (the default): OpenCode asked, the gate allowed, nobody was asked.
    assert "permission.requested" not in kinds
    complete = next(d for _, d in data(events, "message.complete"))
    assert complete["stopReason"] == "end_turn"
    assert complete["usage"]["outputTokens"] > 0
    # History (stored like the built-in engine's) keeps the turn's order.
    listed = await oc_api.http.get(f"/v1/sessions/{sid}/messages", headers=oc_api.auth(key))
    assistant = listed.json()["messages"][-1]
    assert [b["type"] for b in assistant["blocks"]] == ["text", "tool_use", "text"]
    assert "42" in assistant["blocks"][1]["result"]
    # The file is in the workspace, seen through the files API.
    got = await oc_api.http.get(f"/v1/sessions/{sid}/files/calc.py", headers=oc_api.auth(key))
    assert got.status_code == 200 and "6*7" in got.text
    # Every model call went through the proxy, which added the real key (the fake
    # accepts no other) and recorded usage for the session.
    deadline = asyncio.get_running_loop().time() + 30
    while (usage := await oc_api.store.usage_summary("alice", session_id=sid)).by_type.get(
        "proxy.requests", 0
    ) < 2:
        assert asyncio.get_running_loop().time() < deadline, usage
        await asyncio.sleep(0.05)
    assert usage.by_type.get("proxy.tokens.output", 0) > 0


async def model_call_hangs(api: Api, sid: str) -> None:
    """Wait until the session runs and the fake has taken the scripted (hanging) reply."""
    deadline = asyncio.get_running_loop().time() + 120
    # In process, not over HTTP: polling the API would spend the rate limit.
    while not (
        api.services.registry.loaded_actor(sid).record.status == "running"
        and api.model.pending == 0
    ):
        assert asyncio.get_running_loop().time() < deadline, "the turn never started"
        await asyncio.sleep(0.1)


def engine_of(api: Api) -> Any:
    return api.services.registry._deps.engines["opencode"]


async def test_interrupt_aborts_opencode_and_replay_matches(oc_api: Api) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key)
    oc_api.model.enqueue(reply().text("one two three four five six").hang(after_deltas=2))
    events: list[dict[str, Any]] = []

    async def run_turn() -> None:
        events.extend(await turn(oc_api, key, sid, "count slowly"))

    task = asyncio.create_task(run_turn())
    await model_call_hangs(oc_api, sid)
    r = await oc_api.http.post(f"/v1/sessions/{sid}/interrupt", headers=oc_api.auth(key))
    assert r.status_code == 200
    await asyncio.wait_for(task, 60)
    assert types(events)[-2:] == ["message.complete", "session.idle"], types(events)
    assert events[-2]["data"]["stopReason"] == "interrupted"
    # The session works afterwards, in the same OpenCode session.
    oc_api.model.enqueue(reply().text("still here"))
    after = await turn(oc_api, key, sid, "hello?")
    assert after[-2]["data"]["content"] == "still here"
    # Replay: the events after the first turn's start are what was streamed
    first = events[0]["seq"]
    replay = await collect(
        oc_api,
        "GET",
        f"/v1/sessions/{sid}/events",
        key,
        headers={"Last-Event-ID": str(first - 1)},
        until="session.idle",
    )
    # (partial text too, from the in-memory ring)
    assert [(e["seq"], e["type"]) for e in replay] == [(e["seq"], e["type"]) for e in events]


async def test_pause_and_resume_continue_the_opencode_session(oc_api: Api) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key)
    await turn(oc_api, key, sid, "the secret word is kiwi")
    first_session = engine_of(oc_api)._runtimes[sid].opencode_session
    first_token = engine_of(oc_api)._runtimes[sid].token
    r = await oc_api.http.post(f"/v1/sessions/{sid}/pause", headers=oc_api.auth(key))
    assert r.status_code == 200, r.text
    assert sid not in engine_of(oc_api)._runtimes
    r = await oc_api.http.post(f"/v1/sessions/{sid}/resume", headers=oc_api.auth(key))
    assert r.status_code == 200, r.text
    events = await turn(oc_api, key, sid, "what was the word?")
    assert types(events)[-1] == "session.idle"
    assert engine_of(oc_api)._runtimes[sid].opencode_session == first_session
    # OpenCode sent the earlier exchange with the new question: the conversation continued.
    sent = str(oc_api.model.bodies[-1]["messages"])
    assert "kiwi" in sent and "what was the word?" in sent
    # The token of the paused OpenCode died with it.
    assert await oc_api.app.state.model_proxy.tokens.verify(first_token, sid) is None


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return found


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text()
    except OSError:
        return ""


def _environs(pids: list[int]) -> bytes:
    found = b""
    for pid in pids:
        with contextlib.suppress(OSError):
            found += Path(f"/proc/{pid}/environ").read_bytes()
    return found


def _files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


async def test_the_key_is_nowhere_in_the_sandbox(oc_api: Api) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key)
    needle = SECRET_KEY[-24:]
    # Built in the shell, so OpenCode's own records of the command do not hold it.
    command = (
        f"N={needle[:10]}; N=${{N}}{needle[10:]}; "
        'echo "searched for ${#N} chars"; '
        'echo "config in env: $(env | grep -c OPENCODE_CONFIG_CONTENT)"; '
        'echo "key in env: $(env | grep -c -- "$N")"; '
        "echo \"key in environs: $(cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' "
        '| grep -c -- "$N")"; '
        'echo "files with key: $(grep -rl -- "$N" . /tmp "$HOME" 2>/dev/null | wc -l)"'
    )
    oc_api.model.enqueue(
        reply().tool_use("bash", {"command": command, "description": "look for the key"}),
        reply().text("done"),
    )
    events = await turn(oc_api, key, sid, "look around")
    result = next(d for _, d in data(events, "message.tool") if d["status"] == "result")
    output = result["result"]
    for line in (
        "searched for 24 chars",
        "config in env: 1",
        "key in env: 0",
        "key in environs: 0",
        "files with key: 0",
    ):
        assert line in output, output
    # From the host: no process of the sandbox has the key in its environment ...
    runtime = engine_of(oc_api)._runtimes[sid]
    pids = _descendants(runtime.service.process.pid)
    environs = await asyncio.to_thread(_environs, pids)
    assert runtime.token.encode() in environs  # these are OpenCode's processes
    assert SECRET_KEY.encode() not in environs
    # ... and no file of the workspace holds it.
    holders = await asyncio.to_thread(
        _files_holding, runtime.service._sandbox.workspace, SECRET_KEY
    )
    assert holders == []


async def test_the_proxy_refuses_other_sessions_and_deleted_ones(oc_api: Api) -> None:
    key = await oc_api.key()
    one = await new_session(oc_api, key)
    # Another session (no OpenCode needed for it: its token comes from the same store).
    two = await new_session(oc_api, key, engine="builtin")
    token_one = engine_of(oc_api)._runtimes[one].token
    token_two = await oc_api.app.state.model_proxy.tokens.mint(two, "alice")
    body = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
    }

    async def call(sid: str, token: str) -> httpx.Response:
        return await oc_api.http.post(
            f"/v1/model-proxy/{sid}/v1/messages", json=body, headers={"x-api-key": token}
        )

    assert (await call(one, token_one)).status_code == 200
    refused = await call(one, token_two)
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    r = await oc_api.http.delete(f"/v1/sessions/{one}", headers=oc_api.auth(key))
    assert r.status_code == 200
    assert (await call(one, token_one)).status_code == 401
    assert (await call(two, token_two)).status_code == 200


async def test_opencode_dying_mid_turn_ends_the_turn_and_the_next_message_restarts_it(
    oc_api: Api,
) -> None:
    key = await oc_api.key()
    sid = await new_session(oc_api, key)
    first_pid = engine_of(oc_api)._runtimes[sid].service.process.pid
    oc_api.model.enqueue(reply().text("one two three").hang(after_deltas=1))
    events: list[dict[str, Any]] = []

    async def run_turn() -> None:
        events.extend(await turn(oc_api, key, sid, "count"))

    task = asyncio.create_task(run_turn())
    await model_call_hangs(oc_api, sid)
    # OpenCode itself dies (as when its runtime crashes), not the sandbox.
    killed = [p for p in _descendants(first_pid) if _command_name(p).startswith("opencode")]
    assert killed
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    await asyncio.wait_for(task, 90)
    error = next(d for t, d in data(events, "error"))
    assert error["code"] == "MODEL_UNAVAILABLE", error
    assert "exited" in error["message"], error
    assert types(events)[-2:] == ["error", "session.idle"], types(events)
    # The next message starts OpenCode again, in the same OpenCode session.
    oc_api.model.enqueue(reply().text("back again"))
    after = await turn(oc_api, key, sid, "still there?")
    assert after[-2]["data"]["content"] == "back again"
    assert engine_of(oc_api)._runtimes[sid].service.process.pid != first_pid
    # What OpenCode printed is in the session's logs, for whoever debugs the crash.
    r = await oc_api.http.get(f"/v1/sessions/{sid}/logs?tail=500", headers=oc_api.auth(key))
    assert any(
        line.startswith("[opencode] ") and "listening" in line for line in r.json()["logs"]
    ), r.json()


async def test_thinking_asks_for_the_variant_the_model_catalog_allows(
    tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    adaptive = model_listing("claude-adaptive-1")
    adaptive["capabilities"]["thinking"]["types"]["enabled"] = {"supported": False}
    adaptive["capabilities"]["thinking"]["types"]["adaptive"] = {"supported": True}
    fake_model.models = [*DEFAULT_MODELS, adaptive]
    settings = make_settings(tmp_path, fake_model.url)
    loop = AgentLoop(settings)
    tokens = ProxyTokens(SqliteStore(tmp_path / "unused.db"))  # no token is minted here
    try:
        engine = OpenCodeEngine(settings, tokens, model_info=loop.model_info)
        assert await engine._thinking_variant("claude-sonnet-4-6") == THINKING_VARIANT
        assert await engine._thinking_variant("claude-haiku-4-5") is None  # no thinking
        assert await engine._thinking_variant("claude-adaptive-1") == ADAPTIVE_THINKING_VARIANT
        # Without a catalog (or for a model it does not list) thinking is asked with a budget.
        bare = OpenCodeEngine(settings, tokens)
        assert await bare._thinking_variant("claude-haiku-4-5") == THINKING_VARIANT
    finally:
        await loop.aclose()


def _pid_of(pids: list[int], program: str) -> int:
    for pid in pids:
        with contextlib.suppress(OSError):
            if program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                return pid
    raise AssertionError(f"no process runs {program}")


def _limits(pid: int) -> dict[str, str]:
    """``/proc/<pid>/limits``: name -> soft limit."""
    rows = Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]
    return {row[:26].strip(): row[26:].split()[0] for row in rows}


def _largest_code_mapping(pid: int) -> int:
    """Bytes of the largest anonymous executable mapping (a JIT's code pool)."""
    largest = 0
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) == 5 and "x" in fields[1]:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            largest = max(largest, end - start)
    return largest


async def test_opencode_runs_unbounded_and_each_command_it_runs_is_bounded(oc_api: Api) -> None:
    """Bun reserves tens of GiB of address space, which RLIMIT_DATA counts (under
    the default bound its JIT is off and a turn is 4-5x slower): OpenCode itself
    runs without the memory bound, and its shell puts the commands' memory and
    CPU-time bounds back."""
    key = await oc_api.key()
    sid = await new_session(oc_api, key)
    command = (
        'echo "data=$(ulimit -d) cpu=$(ulimit -t) shell=$(basename "$SHELL")"; '
        '(echo >> "$SHELL") 2>/dev/null && echo shell-writable || echo shell-read-only'
    )
    oc_api.model.enqueue(
        reply().tool_use("bash", {"command": command, "description": "show the bounds"}),
        reply().text("done"),
    )
    events = await turn(oc_api, key, sid, "show the bounds")
    output = next(d for _, d in data(events, "message.tool") if d["status"] == "result")["result"]
    runtime = engine_of(oc_api)._runtimes[sid]
    limits = runtime.service._sandbox.limits
    assert limits.memory_mib and limits.cpu_seconds  # the defaults bound both
    assert f"data={limits.memory_mib * 1024} cpu={limits.cpu_seconds} shell=bash" in output
    assert "shell-read-only" in output, output
    pids = await asyncio.to_thread(_descendants, runtime.service.process.pid)
    pid = _pid_of(pids, "opencode")
    own = await asyncio.to_thread(_limits, pid)
    # No memory bound; the service's own CPU-time bound (LOCAL_SANDBOX_SERVICE_CPU_SECONDS,
    # none by default).
    assert own["Max data size"] == "unlimited" and own["Max cpu time"] == "unlimited", own
    # The bound the service keeps: file size (processes too, where the sandbox has a user).
    assert own["Max file size"] == str(limits.max_file_mib * 1024 * 1024), own
    # What the memory bound cost: Bun's JIT maps a 1 GiB code pool at start; under
    # the bound the mapping failed and OpenCode ran interpreted (4-5x slower turns).
    assert await asyncio.to_thread(_largest_code_mapping, pid) >= 512 * 1024 * 1024
