"""Pilot tests of issue 9's TUI pieces against the in-memory fake client: the model
picker and status line, slash commands, thinking, live tool output and the
permission prompt."""

from __future__ import annotations

from textual.widgets import OptionList

from agent_tui.app.app import AgentApp
from agent_tui.app.screens.model_picker import ModelPickerScreen
from agent_tui.app.widgets.status_line import StatusLine
from tests.agent_tui.fake_client import FakeAgentClient, FakeConnection, wait_until
from tests.agent_tui.test_app import SIZE, opened, started


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
