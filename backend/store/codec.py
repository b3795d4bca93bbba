"""Value conversions shared by both stores, so that they agree to the byte.

Both stores accept and return the types of ``backend/records.py``:

- ids are canonical lowercase UUID strings. A malformed id given to a lookup
  finds nothing; a malformed id in a record to insert is a ``ValueError``.
- times are aware UTC ``datetime``s at millisecond precision. Finer precision is
  truncated on the way in (SQLite keeps milliseconds, and PostgreSQL is made to
  match); a naive ``datetime`` is taken to be UTC, as asyncpg does.
- JSON values are Python objects. NUL characters become U+FFFD because
  PostgreSQL can store them neither in ``text`` nor in ``jsonb``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from backend.records import (
    ApiKey,
    EventRecord,
    MessageRecord,
    PermissionRequest,
    ProxyToken,
    SessionRecord,
    ToolCall,
    UsageRecord,
)
from backend.store.base import UsageSummary

# Column names equal the record field names, so each list follows its dataclass.
API_KEY_COLUMNS = tuple(f.name for f in fields(ApiKey))
SESSION_COLUMNS = tuple(f.name for f in fields(SessionRecord))
MESSAGE_COLUMNS = tuple(f.name for f in fields(MessageRecord))
EVENT_COLUMNS = tuple(f.name for f in fields(EventRecord))
USAGE_COLUMNS = tuple(f.name for f in fields(UsageRecord))
PERMISSION_COLUMNS = tuple(f.name for f in fields(PermissionRequest))
PROXY_TOKEN_COLUMNS = tuple(f.name for f in fields(ProxyToken))

SESSION_TIME_FIELDS = frozenset({"created_at", "last_activity_at"})
SESSION_JSON_FIELDS = frozenset({"error", "options"})
MESSAGE_JSON_FIELDS = frozenset({"tool_calls", "usage", "model_messages"})

_REPLACEMENT = "\ufffd"
# A JSON "\u0000" escape not itself preceded by an escaped backslash.
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def utc_ms(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime truncated to milliseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    else:
        value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def format_time(value: datetime) -> str:
    """The one text form of a time in SQLite: ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

    Fixed width, so comparing two of them as text compares them as times.
    """
    v = utc_ms(value)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T"
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    """The inverse of ``format_time``."""
    return datetime.fromisoformat(text).astimezone(UTC)


def canonical_id(value: object) -> str | None:
    """``value`` as a canonical lowercase UUID string, or None if it is not a UUID."""
    if isinstance(value, uuid.UUID):
        return str(value)
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def require_id(value: object, what: str) -> str:
    """``canonical_id(value)``, or ``ValueError`` naming ``what`` when it is no UUID."""
    result = canonical_id(value)
    if result is None:
        raise ValueError(f"{what} must be a UUID, got {value!r}")
    return result


def optional_id(value: object | None, what: str) -> str | None:
    """Like ``require_id`` but lets None through."""
    return None if value is None else require_id(value, what)


def clean_text(value: str | None) -> str | None:
    """``value`` with NUL characters replaced (PostgreSQL text cannot hold them)."""
    if value is None or "\x00" not in value:
        return value
    return value.replace("\x00", _REPLACEMENT)


def dump_json(value: Any) -> str:
    """Compact JSON text for a JSON column; NaN and infinities are a ``ValueError``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if "\\u0000" in text:
        text = _NUL_ESCAPE.sub(r"\1\\ufffd", text)
    return text


def load_json(text: str | None) -> Any:
    """The inverse of ``dump_json``; None stays None (SQL NULL)."""
    return None if text is None else json.loads(text)


def tool_calls_to_json(calls: Iterable[ToolCall | dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls in their stored JSON shape; dicts already in that shape pass through."""
    return [call.to_json() if isinstance(call, ToolCall) else call for call in calls]


def tool_calls_from_json(data: list[dict[str, Any]] | None) -> list[ToolCall]:
    """The inverse of ``tool_calls_to_json``."""
    return [ToolCall.from_json(item) for item in data or ()]


def check_changes(changes: dict[str, Any], allowed: frozenset[str], table: str) -> list[str]:
    """The changed field names in a fixed order, or ``ValueError`` for any name not in
    ``allowed``. Only names from this whitelist ever reach SQL text."""
    unknown = sorted(name for name in changes if name not in allowed)
    if unknown:
        raise ValueError(f"cannot update {table} field(s) {', '.join(map(repr, unknown))}")
    return sorted(changes)


def check_limit(limit: int | None) -> None:
    """``ValueError`` for a negative limit (SQLite would read it as "no limit")."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def summarise_usage(rows: Iterable[tuple[str, str, float]]) -> UsageSummary:
    """A ``UsageSummary`` from (day, event type, quantity) rows ordered by day, type.

    ``by_type`` is summed from the same rows, so the two views always agree.
    """
    by_day = [
        {"date": day, "eventType": event_type, "quantity": float(quantity)}
        for day, event_type, quantity in rows
    ]
    by_type: dict[str, float] = {}
    for item in by_day:
        by_type[item["eventType"]] = by_type.get(item["eventType"], 0.0) + item["quantity"]
    return UsageSummary(by_type=by_type, by_day=by_day)
