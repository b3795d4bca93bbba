"""SVG snapshots of the main screens, against the fake client (deterministic content).

Update after a deliberate visual change with ``pytest --snapshot-update``;
failures write ``snapshot_report.html`` with a side-by-side diff.
"""

from __future__ import annotations

import pytest

from agent_tui.app.app import AgentApp
from agent_tui.app.screens.first_run import FirstRunScreen
from agent_tui.app.screens.keys import KeysScreen
from agent_tui.app.widgets.chat_pane import ChatPane
from agent_tui.app.widgets.tool_call import ToolCallBlock
from tests.agent_tui.fake_client import FakeAgentClient, FakeConnection, wait_until

# Fixed times, so relative ages and dates in the snapshots never drift.
CREATED = "2026-01-15T10:00:00.000Z"


def conversation_client() -> FakeAgentClient:
    client = FakeAgentClient()
    client.add_session(
        "Fix the flaky test", [("user", "Why does test_sync fail?"), ("assistant", "It races.")]
    )
    client.add_session(
        "Add a README",
        [
            ("user", "Write a README for this repo"),
            ("assistant", "## README\n\nDone: it has a **quick start** and a `make test` section."),
        ],
    )
    for session in client.sessions.values():
        session.created_at = session.last_activity_at = CREATED
    client._count = lambda: None  # type: ignore[method-assign]  # a fixed "requests left"
    for key_id, key in list(client.keys.items()):
        client.keys[key_id] = key.model_copy(update={"created_at": CREATED})
    return client


async def settle(pilot) -> None:
    """Connected, the newest session open."""
    app = pilot.app
    pane = app.main_screen.query_one(ChatPane)
    await wait_until(
        pilot, lambda: app.client is not None and pane.status == "idle" and not pane.chat.loading
    )


async def still(pilot, *, focus: str | None = None) -> None:
    """No blinking cursor, the focus on ``focus`` (a selector) or nowhere, no toasts
    (they time out), and a last frame."""
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False
    pilot.app.set_focus(pilot.app.screen.query_one(focus) if focus else None)
    pilot.app.clear_notifications()
    await pilot.pause(0.3)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_main_screen_with_a_finished_turn(snap_compare, size: tuple[int, int]) -> None:
    client = conversation_client()

    async def run_before(pilot) -> None:
        app = pilot.app
        await settle(pilot)
        pane = app.main_screen.query_one(ChatPane)
        pane.prompt.insert("list the files")
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                app.screen.query(ToolCallBlock)
                and pane.status == "idle"
                and not pane.busy
                and pane.chat.settled
                and app.main_screen.status.tokens == 150
            ),
        )
        # Session ages are relative to now: pin them again after the turn touched them.
        for session in client.sessions.values():
            session.last_activity_at = CREATED
        app.main_screen.sessions.show_sessions([s.out() for s in client.sessions.values()])
        # The status line polls the rate limit once a second: show it now, not maybe.
        app.main_screen._show_rate_limit()
        await still(pilot)

    assert snap_compare(AgentApp(FakeConnection(client)), terminal_size=size, run_before=run_before)


def test_keys_screen(snap_compare) -> None:
    async def run_before(pilot) -> None:
        app = pilot.app
        await settle(pilot)
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen) and app.screen.keys)
        await still(pilot)

    app = AgentApp(FakeConnection(conversation_client()))
    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_first_run_screen(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await wait_until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, FirstRunScreen)
                and pilot.app.screen.query("#anthropic-key")
            ),
        )
        # The screen focuses the key input itself, sometimes after a first frame:
        # pin it there, as the user sees it.
        await still(pilot, focus="#anthropic-key")

    app = AgentApp(FakeConnection(needs_setup=True))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
