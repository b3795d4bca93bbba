"""AgentLoop against the fake Anthropic server, through the real SDK over HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

import pytest
from anthropic import AsyncAnthropic

from backend.agent.conversation import user_message
from backend.agent.loop import INTERRUPTED, AgentLoop, default_system_prompt
from backend.agent.types import ModelError, TurnResult
from backend.settings import Settings
from tests.backend.agent.conftest import RecordingObserver, TmpSandbox
from tests.fakes.fake_anthropic import FakeAnthropic, reply, validate_request


async def run(
    agent: AgentLoop,
    sandbox: TmpSandbox,
    observer: RecordingObserver,
    text: str = "hello",
    *,
    history: list[dict[str, Any]] | None = None,
    system_prompt: str | None = None,
) -> TurnResult:
    return await agent.run_turn(
        history=history or [],
        user_content=text,
        system_prompt=system_prompt,
        model="claude-test",
        sandbox=sandbox,
        observer=observer,
    )


def assert_valid(messages: list[dict[str, Any]]) -> None:
    """The fake's own validator: the conversation is one the API accepts."""
    validate_request({"model": "m", "max_tokens": 1, "messages": messages})


async def test_text_only_turn_streams_deltas_in_order(agent, fake, sandbox, observer):
    fake.enqueue(
        reply().text("Hello there, friend.").usage(input_tokens=50, cache_read=40, cache_creation=7)
    )
    result = await run(agent, sandbox, observer, "hi")

    assert observer.deltas() == ["Hello ", "there, ", "friend."]
    assert observer.kinds() == ["delta", "delta", "delta", "done", "step"]
    assert ("done", "Hello there, friend.") in observer.events
    assert result.stop_reason == "end_turn"
    assert result.text == "Hello there, friend."
    assert result.tool_calls == []
    assert result.model_messages == [
        {"role": "assistant", "content": [{"type": "text", "text": "Hello there, friend."}]}
    ]
    assert result.usage.input_tokens == 50
    assert result.usage.cache_read_tokens == 40
    assert result.usage.cache_creation_tokens == 7
    assert result.usage.output_tokens == 4

    (body,) = fake.bodies
    assert body["stream"] is True
    assert body["model"] == "claude-test"
    assert body["max_tokens"] == 1024
    assert body["messages"] == [user_message("hi")]
    assert body["system"] == [
        {"type": "text", "text": default_system_prompt(), "cache_control": {"type": "ephemeral"}}
    ]
    assert body["cache_control"] == {"type": "ephemeral"}
    assert [t["name"] for t in body["tools"]] == [
        "shell",
        "read_file",
        "write_file",
        "edit_file",
        "list_files",
        "search",
    ]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in t for t in body["tools"][:-1])
    assert "temperature" not in body
    assert fake.requests[0].headers["authorization"] == "Bearer test"


async def test_custom_system_prompt_is_sent_as_given(agent, fake, sandbox, observer):
    await run(agent, sandbox, observer, system_prompt="Be terse.")
    assert fake.bodies[0]["system"][0]["text"] == "Be terse."


async def test_tool_use_runs_the_tool_and_sends_its_result(agent, fake, sandbox, observer):
    fake.enqueue(
        reply()
        .text("Let me write it.")
        .tool_use("write_file", {"path": "src/a.txt", "content": "alpha\nbeta\n"}, id="toolu_1"),
        reply().text("Done: wrote src/a.txt."),
    )
    result = await run(agent, sandbox, observer, "write a file")

    assert (sandbox.root / "src/a.txt").read_text() == "alpha\nbeta\n"
    assert result.stop_reason == "end_turn"
    assert result.text == "Let me write it.\n\nDone: wrote src/a.txt."
    (call,) = result.tool_calls
    assert (call.id, call.name, call.is_error) == ("toolu_1", "write_file", False)
    assert call.arguments == {"path": "src/a.txt", "content": "alpha\nbeta\n"}
    assert call.result == "Wrote 11 bytes (2 lines) to src/a.txt"

    # Observer order: text, the call, its result, then the steps.
    kinds = [k for k in observer.kinds() if k != "delta"]
    assert kinds == ["done", "step", "call", "result", "step", "done", "step"]
    assert observer.steps[-1].stop_reason == "end_turn"

    first, second = fake.bodies
    assert first["messages"] == [user_message("write a file")]
    assistant, tool_results = second["messages"][1:]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me write it."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "write_file",
                "input": {"path": "src/a.txt", "content": "alpha\nbeta\n"},
            },
        ],
    }
    assert tool_results == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": "Wrote 11 bytes (2 lines) to src/a.txt",
                "is_error": False,
            }
        ],
    }
    # Caching stays on every call of the turn.
    assert second["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert second["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert second["cache_control"] == {"type": "ephemeral"}
    # model_messages are exactly what was sent, plus the final reply.
    assert result.model_messages[:2] == [assistant, tool_results]
    assert result.model_messages[2] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Done: wrote src/a.txt."}],
    }


async def test_input_json_fragments_split_anywhere(agent, fake, sandbox, observer):
    fragments = ["", '{"com', 'mand": "ec', "ho one", ' && echo two"', "}"]
    fake.enqueue(
        reply().tool_use("shell", {}, id="toolu_x", fragments=fragments),
        reply().text("ok"),
    )
    result = await run(agent, sandbox, observer)
    assert result.tool_calls[0].arguments == {"command": "echo one && echo two"}
    assert result.tool_calls[0].result == "one\ntwo\n[exit code: 0]"


async def test_several_tool_uses_run_in_order(agent, fake, sandbox, observer):
    fake.enqueue(
        reply()
        .tool_use("write_file", {"path": "f.txt", "content": "one two one"}, id="t1")
        .tool_use("edit_file", {"path": "f.txt", "old_string": "one", "new_string": "1"}, id="t2")
        .tool_use("read_file", {"path": "missing.txt"}, id="t3"),
        reply().text("done"),
    )
    result = await run(agent, sandbox, observer)
    assert [c.id for c in result.tool_calls] == ["t1", "t2", "t3"]
    assert [c.is_error for c in result.tool_calls] == [False, True, True]
    assert "occurs 2 times" in result.tool_calls[1].result
    assert result.tool_calls[2].result == "Error: no such file or directory: missing.txt"
    sent = fake.bodies[1]["messages"][-1]["content"]
    assert [(b["tool_use_id"], b["is_error"]) for b in sent] == [
        ("t1", False),
        ("t2", True),
        ("t3", True),
    ]
    calls = [e[0] for e in observer.events if e[0] in ("call", "result")]
    assert calls == ["call", "result"] * 3


async def test_529_then_success_is_retried_transparently(agent, fake, sandbox, observer):
    fake.enqueue(reply().http_error(529), reply().text("fine"))
    result = await run(agent, sandbox, observer)
    assert result.text == "fine"
    assert [r.status for r in fake.message_requests] == [529, 200]
    assert fake.message_requests[1].headers.get("x-stainless-retry-count") == "1"


async def test_429_without_retry_is_a_rate_limit_error(agent, fake, sandbox, observer):
    fake.enqueue(reply().http_error(429, should_retry=False))
    with pytest.raises(ModelError) as info:
        await run(agent, sandbox, observer)
    error = info.value
    assert error.code == "MODEL_RATE_LIMITED"
    assert "rate limit" in error.message
    assert error.details["status"] == 429
    assert error.partial is not None and error.partial.model_messages == []
    assert len(fake.message_requests) == 1


async def test_retries_exhausted_on_overload(agent, fake, sandbox, observer):
    fake.enqueue(reply().http_error(529), reply().http_error(529), reply().http_error(529))
    with pytest.raises(ModelError) as info:
        await run(agent, sandbox, observer)
    assert info.value.code == "MODEL_OVERLOADED"
    assert len(fake.message_requests) == 3  # the first try and max_retries=2


async def test_mid_stream_error_keeps_the_partial_text(agent, fake, sandbox, observer):
    fake.enqueue(
        reply().text("one two three four five").stream_error("overloaded_error", after_deltas=3)
    )
    with pytest.raises(ModelError) as info:
        await run(agent, sandbox, observer)
    error = info.value
    assert error.code == "MODEL_OVERLOADED"
    assert error.details["midStream"] is True
    assert "overloaded" in error.message
    partial = error.partial
    assert partial is not None
    assert partial.text == "one two three "
    assert partial.model_messages == [
        {"role": "assistant", "content": [{"type": "text", "text": "one two three "}]}
    ]
    assert observer.events[-1] == ("done", "one two three ")
    assert len(fake.message_requests) == 1  # a mid-stream error is not retried


async def test_mid_stream_error_during_a_tool_use_drops_the_call(agent, fake, sandbox, observer):
    fake.enqueue(
        reply().text("Looking.").tool_use("shell", {"command": "ls"}).stream_error(after_deltas=4)
    )
    with pytest.raises(ModelError) as info:
        await run(agent, sandbox, observer)
    partial = info.value.partial
    assert partial is not None and partial.tool_calls == []
    assert partial.model_messages == [
        {"role": "assistant", "content": [{"type": "text", "text": "Looking."}]}
    ]
    assert sandbox.commands == []


async def test_connection_dropped_mid_stream_is_unavailable(agent, fake, sandbox, observer):
    fake.enqueue(reply().text("a b c d").disconnect(after_deltas=2))
    with pytest.raises(ModelError) as info:
        await run(agent, sandbox, observer)
    assert info.value.code == "MODEL_UNAVAILABLE"
    assert info.value.partial is not None and info.value.partial.text == "a b "


async def test_bad_request_and_auth_errors(fake, sandbox, observer):
    secret = "sk-ant-api03-secret-value-1234"
    settings = Settings(anthropic_api_key=secret, anthropic_base_url=fake.url)
    fake.api_key = "another-key"
    agent = AgentLoop(settings)
    try:
        with pytest.raises(ModelError) as info:
            await run(agent, sandbox, observer)
        assert info.value.code == "MODEL_AUTH_ERROR"
        assert secret not in info.value.message and secret not in str(info.value.details)
        assert fake.requests[0].headers["authorization"] == f"Bearer {secret}"

        fake.api_key = None
        fake.enqueue(reply().http_error(400, message="messages: too long"))
        with pytest.raises(ModelError) as info:
            await run(agent, sandbox, observer)
        assert info.value.code == "MODEL_BAD_REQUEST"
        assert "messages: too long" in info.value.message
    finally:
        await agent.aclose()


async def test_unreachable_api_is_unavailable(sandbox, observer):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = AsyncAnthropic(api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=0)
    agent = AgentLoop(Settings(anthropic_api_key="k"), client)
    with pytest.raises(ModelError) as info:
        await run(agent, sandbox, observer)
    assert info.value.code == "MODEL_UNAVAILABLE"
    await client.close()


async def test_pause_turn_continues_the_same_assistant_message(agent, fake, sandbox, observer):
    fake.enqueue(reply().text("Part one.").stop("pause_turn"), reply().text("Part two."))
    result = await run(agent, sandbox, observer)
    assert result.stop_reason == "end_turn"
    assert result.text == "Part one.\n\nPart two."
    assert len(fake.bodies) == 2
    assert fake.bodies[1]["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Part one."}],
    }
    assert result.model_messages == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Part one."},
                {"type": "text", "text": "Part two."},
            ],
        }
    ]


@pytest.mark.parametrize(
    "stop", ["max_tokens", "refusal", "stop_sequence", "model_context_window_exceeded"]
)
async def test_final_stop_reasons_end_the_turn(agent, fake, sandbox, observer, stop):
    fake.enqueue(reply().text("Partial answer").stop(stop))
    result = await run(agent, sandbox, observer)
    assert result.stop_reason == stop
    assert result.text == "Partial answer"
    assert len(fake.bodies) == 1


async def test_tool_use_cut_by_max_tokens_is_not_run(agent, fake, sandbox, observer):
    fake.enqueue(
        reply().tool_use("shell", {"command": "touch x"}, id="tcut").stop("max_tokens"),
        reply().text("next turn"),
    )
    result = await run(agent, sandbox, observer)
    assert result.stop_reason == "max_tokens"
    assert sandbox.commands == []
    (call,) = result.tool_calls
    assert call.is_error and "max_tokens" in call.result
    assert_valid([user_message("hello"), *result.model_messages])
    # The next turn is accepted.
    history = [user_message("hello"), *result.model_messages]
    result2 = await run(agent, sandbox, observer, "go on", history=history)
    assert result2.text == "next turn"
    assert fake.requests[-1].status == 200


async def test_max_tool_rounds_bounds_the_turn(fake, client, sandbox, observer):
    settings = Settings(anthropic_api_key="test", max_tool_rounds=2)
    agent = AgentLoop(settings, client)

    def always_a_tool(body: dict[str, Any]):
        return reply().tool_use("shell", {"command": "echo again"})

    fake.default = always_a_tool
    result = await run(agent, sandbox, observer)
    assert result.stop_reason == "max_tool_rounds"
    assert len(fake.bodies) == 3
    assert len(sandbox.commands) == 2
    assert len(result.tool_calls) == 3
    last = result.tool_calls[-1]
    assert last.is_error and "limit of 2 tool rounds" in last.result
    assert_valid([user_message("hello"), *result.model_messages])
    assert observer.steps[-1].stop_reason == "max_tool_rounds"


async def test_step_snapshots_are_valid_conversations(agent, fake, sandbox, observer):
    fake.enqueue(
        reply().tool_use("shell", {"command": "echo hi"}, id="t1"),
        reply().text("done"),
    )
    await run(agent, sandbox, observer)
    for step in observer.steps:
        assert_valid([user_message("hello"), *step.model_messages])
    # The step taken before the tool ran marks it unfinished, should the server stop there.
    before = observer.steps[0]
    assert before.tool_calls[0].is_error
    assert before.tool_calls[0].result == "The turn stopped before this tool finished."


async def test_interrupt_during_a_slow_stream(agent, fake, sandbox, observer):
    fake.enqueue(reply().text("one two three four").hang(after_deltas=2), reply().text("again"))
    task = asyncio.create_task(run(agent, sandbox, observer))
    await asyncio.wait_for(observer.first_delta.wait(), 5)
    await asyncio.sleep(0.05)
    task.cancel()
    result = await asyncio.wait_for(task, 5)

    assert result.stop_reason == "interrupted"
    assert result.text == "one two "
    assert result.model_messages == [
        {"role": "assistant", "content": [{"type": "text", "text": "one two "}]}
    ]
    assert observer.steps[-1].stop_reason == "interrupted"
    assert ("done", "one two ") in observer.events
    assert not task.cancelled()

    history = [user_message("hello"), *result.model_messages]
    next_result = await run(agent, sandbox, observer, "carry on", history=history)
    assert next_result.text == "again"
    assert fake.requests[-1].status == 200


async def test_interrupt_before_any_text(agent, fake, sandbox, observer):
    fake.enqueue(reply().text("never").delay(0, first_byte=5))
    task = asyncio.create_task(run(agent, sandbox, observer))
    await asyncio.sleep(0.3)
    task.cancel()
    result = await asyncio.wait_for(task, 5)
    assert result.stop_reason == "interrupted"
    assert result.model_messages == []
    assert result.text == ""


async def test_interrupt_during_a_long_shell_command(agent, fake, sandbox, observer):
    fake.enqueue(
        reply()
        .text("Running it.")
        .tool_use("shell", {"command": "echo $$ > pid; sleep 30"}, id="t_long")
        .tool_use("read_file", {"path": "pid"}, id="t_next"),
        reply().text("ok, stopped"),
    )
    task = asyncio.create_task(run(agent, sandbox, observer))
    await asyncio.wait_for(observer.tool_started.wait(), 5)
    pid_file = sandbox.root / "pid"
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.02)
    started = time.monotonic()
    task.cancel()
    result = await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 2

    assert result.stop_reason == "interrupted"
    assert [(c.id, c.result, c.is_error) for c in result.tool_calls] == [
        ("t_long", INTERRUPTED, True),
        ("t_next", INTERRUPTED, True),
    ]
    # Both calls were reported, the one that never ran included.
    assert [e[:2] for e in observer.events if e[0] in ("call", "result")] == [
        ("call", "t_long"),
        ("result", "t_long"),
        ("call", "t_next"),
        ("result", "t_next"),
    ]
    assert result.model_messages[-1] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t_long",
                "content": INTERRUPTED,
                "is_error": True,
            },
            {
                "type": "tool_result",
                "tool_use_id": "t_next",
                "content": INTERRUPTED,
                "is_error": True,
            },
        ],
    }
    assert observer.steps[-1].model_messages == result.model_messages
    # The sandbox killed the command.
    pid = int(pid_file.read_text())
    await asyncio.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    # The next turn (whose user message merges into the trailing tool results) is accepted.
    history = [user_message("hello"), *result.model_messages]
    next_result = await run(agent, sandbox, observer, "what happened?", history=history)
    assert next_result.text == "ok, stopped"
    sent = fake.bodies[-1]["messages"]
    assert sent[-1]["content"][-1] == {"type": "text", "text": "what happened?"}
    assert fake.requests[-1].status == 200


async def test_history_ending_with_a_user_message_is_repaired(agent, fake, sandbox, observer):
    history = [
        user_message("first"),
        {"role": "assistant", "content": [{"type": "text", "text": "answer"}]},
        user_message("second, whose turn failed"),
    ]
    await run(agent, sandbox, observer, "third", history=history)
    sent = fake.bodies[0]["messages"]
    assert sent[:2] == history[:2]
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "second, whose turn failed"},
            {"type": "text", "text": "third"},
        ],
    }
    assert fake.requests[0].status == 200


async def test_history_with_a_dangling_tool_use_is_repaired(agent, fake, sandbox, observer):
    history = [
        user_message("first"),
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t_old", "name": "shell", "input": {"command": "x"}}
            ],
        },
    ]
    await run(agent, sandbox, observer, "again", history=history)
    assert fake.requests[0].status == 200
    last = fake.bodies[0]["messages"][-1]
    assert last["content"][0]["tool_use_id"] == "t_old"
    assert last["content"][-1] == {"type": "text", "text": "again"}


async def test_loop_built_from_settings_uses_base_url_and_key(fake, sandbox, observer):
    settings = Settings(anthropic_api_key="key-from-settings", anthropic_base_url=fake.url)
    agent = AgentLoop(settings)
    try:
        result = await run(agent, sandbox, observer, "ping")
    finally:
        await agent.aclose()
    assert result.text == "You said: ping"
    assert fake.requests[0].headers["authorization"] == "Bearer key-from-settings"
    assert fake.bodies[0]["model"] == "claude-test"


async def test_a_failing_observer_is_not_a_model_error(agent, fake, sandbox):
    class Broken(RecordingObserver):
        async def on_text_delta(self, text: str) -> None:
            raise ValueError("observer bug")

    with pytest.raises(ValueError, match="observer bug"):
        await run(agent, sandbox, Broken())


async def test_fake_rejects_what_the_api_would(fake: FakeAnthropic, client: AsyncAnthropic):
    import anthropic

    bad = [
        [{"role": "assistant", "content": "hi"}],
        [user_message("a"), user_message("b")],
        [
            user_message("a"),
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "x", "input": {}}],
            },
            user_message("no result"),
        ],
        [
            user_message("a"),
            {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": "?"}],
            },
        ],
        [{"role": "user", "content": [{"type": "text", "text": ""}]}],
    ]
    for messages in bad:
        with pytest.raises(anthropic.BadRequestError):
            await client.messages.create(model="m", max_tokens=5, messages=messages)
    assert [r.status for r in fake.requests] == [400] * len(bad)
    assert fake.pending == 0


@pytest.mark.parametrize("config_dir", [False, True], ids=["nothing", "unreadable-profile"])
async def test_missing_api_key_is_an_auth_error(
    fake, sandbox, observer, monkeypatch, tmp_path, config_dir
):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if config_dir:
        monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path / "no-config"))
    else:
        monkeypatch.delenv("ANTHROPIC_CONFIG_DIR", raising=False)
    agent = AgentLoop(Settings(anthropic_api_key="", anthropic_base_url=fake.url))
    try:
        with pytest.raises(ModelError) as info:
            await run(agent, sandbox, observer)
    finally:
        await agent.aclose()
    assert info.value.code == "MODEL_AUTH_ERROR"
    assert "ANTHROPIC_API_KEY" in info.value.message
    assert fake.requests == []
