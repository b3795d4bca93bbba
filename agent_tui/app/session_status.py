"""The app's view of a session's status, driven by the contract's ``session.*`` events.

Events arrive in the order the server emitted them, and the same event can mean
different things in different states: a message sent to a paused session gives
``session.running`` and then ``session.resumed`` (its sandbox is back while the
turn runs), while ``POST .../resume`` gives ``session.resumed`` alone (the
session is idle again). ``apply_status_event`` is the one place that knows this.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["STATUS_EVENTS", "StatusUpdate", "apply_status_event"]


class StatusUpdate(NamedTuple):
    """A session's status after an event, and its sandbox state when the event says it."""

    status: str
    sandbox_state: str | None


STATUS_EVENTS = frozenset(
    {
        "session.starting",
        "session.ready",
        "session.idle",
        "session.running",
        "session.paused",
        "session.resumed",
        "session.terminated",
        "session.error",
    }
)


def apply_status_event(status: str, event_type: str) -> StatusUpdate | None:
    """The status that follows ``status`` on ``event_type``; None for other events."""
    match event_type:
        case "session.starting":
            return StatusUpdate("starting", "starting")
        case "session.ready":
            return StatusUpdate("idle", "ready")
        case "session.idle":
            return StatusUpdate("idle", None)
        case "session.running":
            # A paused session's sandbox comes back before the turn's model call.
            return StatusUpdate("running", "resuming" if status == "paused" else None)
        case "session.paused":
            return StatusUpdate("paused", "paused")
        case "session.resumed":
            # The sandbox is back; a turn that started the resume keeps running.
            return StatusUpdate("running" if status == "running" else "idle", "ready")
        case "session.terminated":
            return StatusUpdate("terminated", "terminated")
        case "session.error":
            return StatusUpdate("error", None)
    return None
