"""Record factories for the store tests: valid records with overridable fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backend.records import (
    ApiKey,
    EventRecord,
    MessageRecord,
    SessionRecord,
    UsageRecord,
    new_id,
    utcnow,
)

BASE_TIME = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


def at(seconds: float = 0.0) -> datetime:
    """A fixed instant plus ``seconds``: tests do not depend on the clock."""
    return BASE_TIME + timedelta(seconds=seconds)


def make_key(user_id: str = "user-1", **fields: Any) -> ApiKey:
    values: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "name": "laptop",
        "key_hash": new_id().replace("-", "") * 2,  # 64 hex chars, like a SHA-256 digest
        "prefix": "aa_live_AbCd",
        "last4": "wxyz",
        "environment": "live",
        "scopes": ["sessions"],
        "created_at": utcnow(),
    }
    values.update(fields)
    return ApiKey(**values)


def make_session(user_id: str = "user-1", **fields: Any) -> SessionRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "status": "idle",
        "model": "claude-test",
        "created_at": now,
        "last_activity_at": now,
    }
    values.update(fields)
    return SessionRecord(**values)


def make_message(session_id: str, **fields: Any) -> MessageRecord:
    values: dict[str, Any] = {
        "id": new_id(),
        "session_id": session_id,
        "role": "user",
        "content": "hello",
        "created_at": utcnow(),
    }
    values.update(fields)
    return MessageRecord(**values)


def make_event(session_id: str, seq: int, **fields: Any) -> EventRecord:
    values: dict[str, Any] = {
        "session_id": session_id,
        "seq": seq,
        "type": "message.user",
        "data": {"messageId": new_id(), "content": f"event {seq}"},
        "created_at": utcnow(),
    }
    values.update(fields)
    return EventRecord(**values)


def make_usage(user_id: str = "user-1", **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "event_type": "tokens.input",
        "quantity": 1.0,
        "created_at": utcnow(),
    }
    values.update(fields)
    return UsageRecord(**values)
