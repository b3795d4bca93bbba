"""The app's session status follows every ``session.*`` event, whatever their order."""

from __future__ import annotations

import pytest

from agent_tui.app.session_status import STATUS_EVENTS, apply_status_event
from backend import events as ev


def replay(status: str, *types: str) -> tuple[str, str | None]:
    sandbox: str | None = None
    for kind in types:
        update = apply_status_event(status, kind)
        assert update is not None, kind
        status = update.status
        sandbox = update.sandbox_state or sandbox
    return status, sandbox


def test_every_status_event_of_the_contract_is_handled() -> None:
    assert {ev.__dict__[n] for n in dir(ev) if n.startswith("SESSION_")} - {
        ev.SESSION_CREATED,
        ev.SESSION_PROGRESS,
        ev.SESSION_UPDATED,  # model and agent options, not a status
    } <= STATUS_EVENTS
    assert apply_status_event("idle", "message.assistant") is None


def test_a_message_to_a_paused_session_keeps_running_after_the_resume() -> None:
    assert replay("paused", "session.running", "session.resumed") == ("running", "ready")
    assert replay("paused", "session.running", "session.resumed", "session.idle") == (
        "idle",
        "ready",
    )


def test_a_resume_before_the_turn_starts_also_ends_running() -> None:
    assert replay("paused", "session.resumed", "session.running") == ("running", "ready")


@pytest.mark.parametrize("status", ["paused", "idle", "error"])
def test_a_plain_resume_makes_the_session_idle(status: str) -> None:
    assert replay(status, "session.resumed") == ("idle", "ready")


def test_running_on_a_paused_session_shows_the_sandbox_resuming() -> None:
    assert replay("paused", "session.running") == ("running", "resuming")
