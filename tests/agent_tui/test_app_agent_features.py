"""Pilot tests of issue 9's TUI pieces against the in-memory fake client: the model
picker and status line, slash commands, thinking, live tool output and the
permission prompt."""

from __future__ import annotations

import asyncio

from textual.widgets import OptionList

from agent_tui.app.app import AgentApp
from agent_tui.app.screens.model_picker import ModelPickerScreen
from agent_tui.app.widgets.agent_blocks import LiveOutput, ThinkingBlock
from agent_tui.app.widgets.chat_notice import ChatNotice
from agent_tui.app.widgets.completion_hint import CompletionHint
from agent_tui.app.widgets.permission_prompt import PermissionPrompt, describe_call
from agent_tui.app.widgets.prompt import PromptArea
from agent_tui.app.widgets.status_line import StatusLine
from agent_tui.app.widgets.tool_call import ToolCallBlock
from tests.agent_tui.fake_client import FakeAgentClient, FakeConnection, wait_until
from tests.agent_tui.test_app import SIZE, idle, opened, send, started


async def test_model_picker_changes_the_model_shown_in_the_status_line() -> None:
    client = FakeAgentClient()
    session = client.add_session("one", [("user", "hi")])
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        status = app.main_screen.query_one(StatusLine)
        await wait_until(pilot, lambda: status.model == "fake-model", what="model shown")
        assert "fake-model" in str(status.render())
        await pilot.press("f9")
        await wait_until(pilot, lambda: isinstance(app.screen, ModelPickerScreen), what="picker")
        options = app.screen.query_one(OptionList)
        assert options.option_count == 2
        assert options.highlighted == 0  # the current model
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: status.model == "fake-small", what="model changed")
        assert client.sessions[session.id].model == "fake-small"
        assert client.updates[-1][2] == "fake-small"


async def test_model_change_from_another_client_reaches_the_status_line() -> None:
    client = FakeAgentClient()
    session = client.add_session("one")
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        status = app.main_screen.query_one(StatusLine)
        await client.session(session.id).update(model="fake-small", permission_mode="ask")
        await wait_until(
            pilot,
            lambda: (status.model, status.permission_mode) == ("fake-small", "ask"),
            what="session.updated applied",
        )


async def test_thinking_shows_as_a_collapsed_dimmed_block() -> None:
    client = FakeAgentClient()
    session = client.add_session("one")
    client.scripts["think"] = [
        ("event", ("message.thinking", {"content": "Let me ", "isPartial": True})),
        ("event", ("message.thinking", {"content": "plan.", "isPartial": True})),
        ("event", ("message.thinking", {"content": "Let me plan.", "isPartial": False})),
        ("text", "Planned."),
        ("end_text", None),
    ]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        await send(pilot, app, "think")
        await idle(pilot, app)
        [block] = app.screen.query(ThinkingBlock)
        assert block.collapsed and block.finished
        assert block.text == "Let me plan."
        assert "Thought (3 words)" in str(block.title)


async def test_live_tool_output_shows_the_tail_then_collapses() -> None:
    client = FakeAgentClient()
    session = client.add_session("one")
    gate = asyncio.Event()
    args = {"command": "make"}
    client.scripts["build"] = [
        ("tool_start", ("toolu_1", "shell", args)),
        ("event", ("tool.output", {"toolId": "toolu_1", "stream": "stdout", "text": "step 1\n"})),
        ("event", ("tool.output", {"toolId": "toolu_1", "stream": "stderr", "text": "step 2\n"})),
        ("wait", gate),
        ("tool_end", ("toolu_1", "shell", args, "step 1\nstep 2\n", False)),
    ]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        await send(pilot, app, "build")
        await wait_until(pilot, lambda: bool(app.screen.query(LiveOutput)), what="live output")
        [live] = app.screen.query(LiveOutput)
        await wait_until(pilot, lambda: "step 2" in str(live.render()), what="tail")
        assert "step 1" in str(live.render()) and "⏱" in str(live.render())
        [block] = app.screen.query(ToolCallBlock)
        assert not block.collapsed
        gate.set()
        await idle(pilot, app)
        assert not app.screen.query(LiveOutput)
        assert block.collapsed and block.status == "done"


async def test_permission_prompt_in_the_open_session_is_answered_with_y_and_n() -> None:
    client = FakeAgentClient()
    session = client.add_session("one")
    client.scripts["edit"] = [
        ("ask", ("toolu_1", "shell", {"command": "make install"})),
        ("ask", ("toolu_2", "write_file", {"path": "x.txt", "content": "x"})),
        ("text", "Done."),
        ("end_text", None),
    ]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        await send(pilot, app, "edit")
        await wait_until(pilot, lambda: isinstance(app.focused, PermissionPrompt), what="prompt")
        prompt = app.focused
        assert isinstance(prompt, PermissionPrompt) and prompt.tool == "shell"
        assert "make install" in str(prompt.render())
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: isinstance(app.focused, PermissionPrompt) and app.focused.tool == "write_file",
            what="second prompt",
        )
        await pilot.press("n")
        await idle(pilot, app)
        assert [d for _, _, d in client.answered] == ["allow", "deny"]
        assert not app.screen.query(PermissionPrompt)


async def test_another_sessions_request_shows_with_a_badge_and_a_to_always_allow() -> None:
    client = FakeAgentClient()
    waiting = client.add_session("background job")
    shown = client.add_session("foreground")
    client.scripts["bg"] = [("ask", ("toolu_9", "shell", {"command": "rm -rf build"}))]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, shown.id)
        # The other session starts a turn that waits for approval.
        turn = client.session(waiting.id).stream_message("bg")
        await anext(turn)
        await wait_until(pilot, lambda: bool(waiting.pending), what="request made")
        await wait_until(
            pilot, lambda: bool(app.screen.query(PermissionPrompt)), what="prompt", seconds=15
        )
        [prompt] = app.screen.query(PermissionPrompt)
        assert prompt.session_id == waiting.id and "background job" in str(prompt.render())
        options = app.main_screen.query_one("#session-list", OptionList)
        rows = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert any("background job" in r and "approve" in r for r in rows)
        prompt.focus()
        await pilot.press("a")
        await wait_until(
            pilot,
            lambda: client.answered == [(waiting.id, prompt.request_id, "always")],
            what="answered",
        )
        await wait_until(pilot, lambda: not app.screen.query(PermissionPrompt), what="tray empty")
        await turn.aclose()


async def test_slash_commands_complete_with_tab_and_run() -> None:
    client = FakeAgentClient()
    session = client.add_session("one")
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        prompt = app.screen.query_one(PromptArea)
        prompt.focus()
        await pilot.press("slash", "p", "e")
        hint = app.screen.query_one(CompletionHint)
        await wait_until(pilot, lambda: hint.candidates == ["/permissions"], what="candidates")
        await pilot.press("tab")
        assert prompt.text == "/permissions "
        prompt.insert("ask")
        await pilot.press("enter")
        status = app.main_screen.query_one(StatusLine)
        await wait_until(pilot, lambda: status.permission_mode == "ask", what="mode changed")
        assert client.sessions[session.id].permission_mode == "ask"
        # /compact runs on the session; the event shows a notice in the chat.
        prompt.insert("/compact")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: client.sessions[session.id].compactions == 1, what="compact"
        )
        await wait_until(
            pilot,
            lambda: any("compacted" in str(n.render()) for n in app.screen.query(ChatNotice)),
            what="compaction notice",
        )
        # /model with a name sets it; an unknown /command is refused, not sent.
        prompt.insert("/model fake-small")
        await pilot.press("enter")
        await wait_until(pilot, lambda: status.model == "fake-small", what="model")
        prompt.insert("/frobnicate")
        await pilot.press("enter")
        assert prompt.text == "/frobnicate" and not client.sent


async def test_at_path_completes_from_the_files_api_and_attaches_the_file() -> None:
    client = FakeAgentClient()
    client.files = {"src/app.py": "print('hi')\n", "src/util.py": "X = 1\n", "README.md": "r"}
    session = client.add_session("one")
    client.scripts["look at @src/app.py please"] = [("text", "ok"), ("end_text", None)]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        prompt = app.screen.query_one(PromptArea)
        prompt.focus()
        prompt.insert("look at @sr")
        hint = app.screen.query_one(CompletionHint)
        await wait_until(pilot, lambda: hint.candidates == ["@src/"], what="folder candidate")
        await pilot.press("tab")
        assert prompt.text == "look at @src/"
        await wait_until(
            pilot, lambda: hint.candidates == ["@src/app.py", "@src/util.py"], what="files"
        )
        prompt.insert("a")
        await wait_until(pilot, lambda: hint.candidates == ["@src/app.py"], what="one file")
        await pilot.press("tab")
        prompt.insert("please")
        await pilot.press("enter")
        await wait_until(pilot, lambda: bool(client.sent), what="sent")
        [(_, text)] = client.sent
        assert text.startswith("look at @src/app.py please")
        assert "<file path=\"src/app.py\">\nprint('hi')\n\n</file>" in text


def test_a_permission_prompt_names_the_file_of_either_engine() -> None:
    assert describe_call("shell", {"command": "make  test"}) == "make test"
    assert describe_call("write_file", {"path": "a.py", "content": "x"}) == "a.py"
    # OpenCode's edits name it filePath.
    assert describe_call("edit_file", {"filePath": "/w/b.py", "oldString": "x"}) == "/w/b.py"
