"""Live tool output: a running command's stdout/stderr reach clients as ``tool.output``
events before it ends; the full output is still in the tool result."""

from __future__ import annotations

from tests.backend.api.conftest import Api, turn_stream
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import reply

# Waits for a file the test creates once it has seen the first line live.
GATED = "echo first; echo oops >&2; while [ ! -f go ]; do sleep 0.05; done; echo second"


async def test_output_arrives_while_the_command_runs(api: Api) -> None:
    key = await api.key()
    session = await new_session(api, key)
    workspace = api.settings.data_dir / "sandboxes" / "live" / session / "workspace"
    assert workspace.is_dir(), workspace
    api.model.enqueue(reply().tool_use("shell", {"command": GATED}), reply().text("ok"))
    seen: list[dict] = []
    async with turn_stream(api, key, session, "run it") as events:
        async for event in events:
            seen.append(event)
            live = "".join(
                e["data"]["text"]
                for e in seen
                if e["type"] == "tool.output" and e["data"]["stream"] == "stdout"
            )
            if "first" in live and not (workspace / "go").exists():
                # The command is blocked until this file exists: the output was live.
                assert not [
                    e
                    for e in seen
                    if e["type"] == "message.tool" and e["data"]["status"] == "result"
                ]
                (workspace / "go").write_text("")
            if event["type"] == "session.idle":
                break
    outputs = [e["data"] for e in seen if e["type"] == "tool.output"]
    assert {o["stream"] for o in outputs} == {"stdout", "stderr"}
    assert "oops" in "".join(o["text"] for o in outputs if o["stream"] == "stderr")
    assert "second" in "".join(o["text"] for o in outputs if o["stream"] == "stdout")
    [result] = [
        e["data"] for e in seen if e["type"] == "message.tool" and e["data"]["status"] == "result"
    ]
    assert "first" in result["result"] and "second" in result["result"]
    assert "oops" in result["result"]
    # Every tool.output came before the result, and none is stored for replay.
    last_output = max(e["seq"] for e in seen if e["type"] == "tool.output")
    assert last_output < next(
        e["seq"] for e in seen if e["type"] == "message.tool" and e["data"]["status"] == "result"
    )
    replay = await collect(
        api,
        "GET",
        f"/v1/sessions/{session}/events",
        key,
        params={"after": 0},
        until="message.complete",
    )
    assert len(replay) > 3


async def test_output_is_bounded_in_total(tmp_path, fake_model) -> None:
    from tests.backend.api.conftest import api_for, make_settings

    settings = make_settings(tmp_path, fake_model.url, tool_output_stream_max_bytes=4096)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        session = await new_session(api, key)
        api.model.enqueue(
            reply().tool_use("shell", {"command": "yes xxxxxxxxx | head -c 200000"}),
            reply().text("ok"),
        )
        events = await collect(
            api,
            "POST",
            f"/v1/sessions/{session}/messages",
            key,
            until="session.idle",
            json={"content": "go"},
        )
        outputs = [e["data"] for e in events if e["type"] == "tool.output"]
        assert sum(len(o["text"]) for o in outputs) <= 4096
        assert outputs[-1].get("truncated") is True
        [result] = [
            e["data"]
            for e in events
            if e["type"] == "message.tool" and e["data"]["status"] == "result"
        ]
        assert "xxxxxxxxx\n" * 100 in result["result"]  # the result keeps its own (larger) share
