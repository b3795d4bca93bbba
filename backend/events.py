"""Events: the one definition of every event, used by the server and the client.

An event is framed as one SSE frame (``id:`` = seq, ``event:`` = type, ``data:`` =
the JSON of the whole ``Event``). ``seq`` rises by one per session for every
event, partial text included.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Event types of the contract.
SESSION_CREATED = "session.created"
SESSION_PROGRESS = "session.progress"
SESSION_READY = "session.ready"
SESSION_IDLE = "session.idle"
SESSION_STARTING = "session.starting"
SESSION_RUNNING = "session.running"
SESSION_PAUSED = "session.paused"
SESSION_RESUMED = "session.resumed"
SESSION_TERMINATED = "session.terminated"
SESSION_ERROR = "session.error"
MESSAGE_USER = "message.user"
MESSAGE_ASSISTANT = "message.assistant"
MESSAGE_TOOL = "message.tool"
MESSAGE_COMPLETE = "message.complete"
ERROR = "error"
# Agent capabilities (issue 9).
SESSION_UPDATED = "session.updated"
MESSAGE_THINKING = "message.thinking"
CONTEXT_COMPACTED = "context.compacted"
TOOL_OUTPUT = "tool.output"
PERMISSION_REQUESTED = "permission.requested"
PERMISSION_ANSWERED = "permission.answered"
# Sent by the server to a follower that fell too far behind: reconnect with
# Last-Event-ID = data.lastSeq. Not stored, no seq of its own (id: is the last seq sent).
STREAM_RESYNC = "stream.resync"

EVENT_TYPES = (
    SESSION_CREATED,
    SESSION_PROGRESS,
    SESSION_READY,
    SESSION_IDLE,
    SESSION_STARTING,
    SESSION_RUNNING,
    SESSION_PAUSED,
    SESSION_RESUMED,
    SESSION_TERMINATED,
    SESSION_ERROR,
    MESSAGE_USER,
    MESSAGE_ASSISTANT,
    MESSAGE_TOOL,
    MESSAGE_COMPLETE,
    ERROR,
    SESSION_UPDATED,
    MESSAGE_THINKING,
    CONTEXT_COMPACTED,
    TOOL_OUTPUT,
    PERMISSION_REQUESTED,
    PERMISSION_ANSWERED,
)

# Events after which a turn's stream (POST .../messages) ends. A failed turn sends
# ``error`` and then ``session.idle``, so ``error`` is not among them: read on to
# the idle event (the session stays usable).
TURN_END_TYPES = (SESSION_IDLE, SESSION_ERROR, SESSION_TERMINATED, SESSION_PAUSED)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of one session."""

    type: str
    seq: int
    session_id: str
    timestamp: str  # ISO 8601 UTC
    data: dict[str, Any]

    @property
    def is_partial(self) -> bool:
        """Partial text, thinking and live tool output: kept in memory for replay,
        never stored (the finished text, thinking block and tool result are)."""
        if self.type == TOOL_OUTPUT:
            return True
        return self.type in (MESSAGE_ASSISTANT, MESSAGE_THINKING) and bool(
            self.data.get("isPartial")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "seq": self.seq,
            "sessionId": self.session_id,
            "timestamp": self.timestamp,
            "data": self.data,
        }

    def frame(self) -> bytes:
        """The SSE frame for this event."""
        payload = json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.seq}\nevent: {self.type}\ndata: {payload}\n\n".encode()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        return cls(
            type=data["type"],
            seq=int(data["seq"]),
            session_id=data["sessionId"],
            timestamp=data["timestamp"],
            data=data.get("data") or {},
        )


KEEPALIVE_FRAME = b": keepalive\n\n"


def resync_frame(last_seq: int) -> bytes:
    """The frame that tells a lagging follower to reconnect after ``last_seq``."""
    payload = json.dumps({"type": STREAM_RESYNC, "data": {"lastSeq": last_seq}})
    return f"id: {last_seq}\nevent: {STREAM_RESYNC}\ndata: {payload}\n\n".encode()
