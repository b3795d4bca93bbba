"""Every screen readable at 80×24: what is shown fits, what is dropped is dropped on purpose."""

from __future__ import annotations

from rich.cells import cell_len
from textual.widgets import DataTable

from agent_tui.app.app import AgentApp
from agent_tui.app.screens.keys import KeysScreen
from agent_tui.app.widgets.chat_pane import ChatPane
from agent_tui.app.widgets.prompt import PromptArea
from agent_tui.app.widgets.status_line import StatusLine
from tests.agent_tui.fake_client import FakeAgentClient, FakeConnection, wait_until

SMALL = (80, 24)


async def started(pilot, app: AgentApp) -> None:
    await wait_until(pilot, lambda: app.client is not None, what="connection")
    await wait_until(
        pilot, lambda: not app.main_screen.query_one("#session-list").loading, what="sessions"
    )


async def test_the_status_line_keeps_what_matters_at_80_columns() -> None:
    app = AgentApp(FakeConnection(FakeAgentClient()))
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        status = app.screen.query_one(StatusLine)
        status.session_status = "running"
        status.sandbox_state = "resuming"
        status.tokens = 123_456
        status.rate_remaining, status.rate_limit = 97, 100
        status.progress = "interrupting…"
        status.mode = "remote http://example.com:8787"
        await pilot.pause()
        text = status.render().plain
        assert cell_len(text) <= status.content_size.width, text
        for wanted in ("running", "resuming", "interrupting…", "97"):
            assert wanted in text, text
        # The normal case says nothing: "connected" is dropped before anything else.
        status.connection = "reconnecting"
        await pilot.pause()
        text = status.render().plain
        assert "reconnecting" in text and cell_len(text) <= status.content_size.width, text
        # At 120 columns everything fits.
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        status.connection = "connected"
        status.mode = "embedded"
        await pilot.pause()
        text = status.render().plain
        for wanted in ("connected", "embedded", "tokens", "req left"):
            assert wanted in text, text


async def test_the_keys_table_fits_80_columns() -> None:
    app = AgentApp(FakeConnection(FakeAgentClient()))
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen), what="keys")
        table = app.screen.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count >= 1, what="keys listed")
        await pilot.pause()
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[:3] == ["Name", "Key", "Status"] and "Expires" in labels
        assert table.virtual_size.width <= table.scrollable_content_region.width, labels


async def test_notifications_leave_the_prompt_and_status_line_visible() -> None:
    app = AgentApp(FakeConnection(FakeAgentClient()))
    async with app.run_test(size=SMALL, notifications=True) as pilot:
        await started(pilot, app)
        for i in range(3):
            app.notify(f"Something long enough to wrap over a few lines, number {i}.")
        await pilot.pause()
        await pilot.pause(0.3)
        toasts = list(app.screen.query("Toast"))
        assert toasts
        covered = [
            app.screen.query_one(StatusLine).region,
            app.screen.query_one(PromptArea).region,
        ]
        for toast in toasts:
            for region in covered:
                assert not toast.region.overlaps(region), (toast.region, region)


async def test_welcome_and_sidebar_texts_wrap_as_paragraphs() -> None:
    app = AgentApp(FakeConnection(FakeAgentClient()))
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        pane = app.screen.query_one(ChatPane)
        welcome = pane.query_one("#chat-welcome")
        empty = app.screen.query_one("#sessions-empty")
        for widget in (welcome, empty):
            strips = widget.render_lines(widget.region.reset_offset)
            # No line ends in the middle of a sentence with a one-word orphan below it.
            rows = [strip.text.strip() for strip in strips if strip.text.strip()]
            assert all(len(r.split()) > 1 for r in rows), rows


async def test_the_new_key_form_fits_24_rows_without_scrolling() -> None:
    from agent_tui.app.screens.key_create import KeyCreateScreen

    app = AgentApp(FakeConnection(FakeAgentClient()))
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen), what="keys")
        await pilot.press("n")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, KeyCreateScreen) and app.screen.query("#create"),
            what="form",
        )
        await pilot.pause()
        dialog = app.screen.query_one("#key-create")
        assert dialog.max_scroll_y == 0, dialog.virtual_size
        assert app.screen.query_one(".dialog-title").region.height == 1
