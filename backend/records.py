"""Domain records: what the ``Store`` keeps and returns.

Plain dataclasses with normalised types (ids as ``str`` UUIDs, times as aware
UTC ``datetime``, JSON columns as Python objects), identical for SQLite and
PostgreSQL. The HTTP shapes built from them live in ``backend/schemas.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Session statuses (the contract's state machine).
STARTING, IDLE, RUNNING, PAUSED, ERROR, TERMINATED = (
    "starting",
    "idle",
    "running",
    "paused",
    "error",
    "terminated",
)
SESSION_STATUSES = (STARTING, IDLE, RUNNING, PAUSED, ERROR, TERMINATED)
# Statuses that count against maxActiveSessions.
ACTIVE_STATUSES = (STARTING, IDLE, RUNNING, ERROR)

# Sandbox states shown to clients.
SANDBOX_STATES = (
    "none",
    "starting",
    "ready",
    "pausing",
    "paused",
    "resuming",
    "terminated",
    "error",
)

SCOPES = ("sessions", "admin")


def utcnow() -> datetime:
    """The current time, aware, in UTC, at millisecond precision (both stores keep ms)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=(now.microsecond // 1000) * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class ApiKey:
    """A stored API key: never the key itself, only its SHA-256 hex digest."""

    id: str
    user_id: str
    name: str
    key_hash: str
    prefix: str
    last4: str
    environment: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now


@dataclass
class SessionRecord:
    """One session's persisted state. The session's actor is its only writer."""

    id: str
    user_id: str
    status: str
    model: str
    created_at: datetime
    last_activity_at: datetime
    api_key_id: str | None = None
    title: str | None = None
    repo: str | None = None
    system_prompt: str | None = None
    sandbox_provider: str = "local"
    sandbox_id: str | None = None
    sandbox_state: str = "none"
    snapshot_id: str | None = None
    # Highest event seq handed out; a restarted actor continues after it.
    last_seq: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    sandbox_seconds: float = 0.0
    message_count: int = 0
    # {"code", "message"} while status == "error".
    error: dict[str, Any] | None = None
    # Agent options: {"thinking": bool, "permissionMode": str, "allowedTools": [str]}.
    options: dict[str, Any] = field(default_factory=dict)
    # Who runs the turns: "builtin" (the agent loop) or "opencode".
    engine: str = "builtin"


# Columns of SessionRecord that ``Store.update_session`` may change.
SESSION_MUTABLE_FIELDS = frozenset(
    {
        "status",
        "title",
        "last_activity_at",
        "sandbox_id",
        "sandbox_state",
        "snapshot_id",
        "last_seq",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "sandbox_seconds",
        "message_count",
        "error",
        "model",
        "system_prompt",
        "options",
    }
)


@dataclass
class ToolCall:
    """One tool call of an assistant message, with its result once known."""

    id: str
    name: str
    arguments: dict[str, Any]
    result: str | None = None
    is_error: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "isError": self.is_error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToolCall:
        return cls(
            id=data["id"],
            name=data["name"],
            arguments=data.get("arguments") or {},
            result=data.get("result"),
            is_error=bool(data.get("isError", False)),
        )


@dataclass
class MessageRecord:
    """One message of the conversation as clients see it.

    ``model_messages`` holds the exact Anthropic ``MessageParam`` dicts this message
    contributed to the model conversation: for a user message, one user message;
    for an assistant message, its assistant turns and the tool_result user turns
    between them. Concatenated in order they rebuild the model conversation.
    """

    id: str
    session_id: str
    role: str  # user | assistant
    content: str
    created_at: datetime
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: str | None = None
    usage: dict[str, int] | None = None
    model_messages: list[dict[str, Any]] = field(default_factory=list)


# Columns of MessageRecord that ``Store.update_message`` may change.
MESSAGE_MUTABLE_FIELDS = frozenset(
    {"content", "tool_calls", "stop_reason", "usage", "model_messages"}
)


PERMISSION_DECISIONS = ("allow", "deny", "always")


@dataclass
class PermissionRequest:
    """A tool call waiting for the user's approval (permission mode ``ask``).

    ``decision`` is None while pending, then ``allow``, ``deny`` or ``always``
    (allow this tool for the rest of the session). Stored, so it outlives a
    client's disconnect and a server restart, and any replica can answer it.
    """

    id: str
    session_id: str
    message_id: str
    tool_use_id: str
    tool: str
    input: dict[str, Any]
    created_at: datetime
    decision: str | None = None
    decided_at: datetime | None = None


@dataclass
class ProxyToken:
    """A model-proxy token of one session (``backend/model_proxy/tokens.py``).

    Only ``token_hash``, the SHA-256 hex digest of the token, is stored; the
    token itself exists in the sandbox that uses it and nowhere else.
    """

    token_hash: str
    session_id: str
    user_id: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass
class EventRecord:
    """A completed (non-partial) event, as stored for replay."""

    session_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass
class UsageRecord:
    """One usage fact, e.g. ``tokens.input`` 1523 for a session."""

    id: str
    user_id: str
    event_type: (
        str  # session.created | message.sent | tokens.input | tokens.output | sandbox.seconds ...
    )
    quantity: float
    created_at: datetime
    session_id: str | None = None
