"""Pilot tests of issue 9's TUI pieces against the in-memory fake client: the model
picker and status line, slash commands, thinking, live tool output and the
permission prompt."""

from __future__ import annotations

import asyncio

from textual.widgets import OptionList

from agent_tui.app.app import AgentApp
from agent_tui.app.screens.model_picker import ModelPickerScreen
from agent_tui.app.widgets.agent_blocks import LiveOutput, ThinkingBlock
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
