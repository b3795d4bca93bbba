"""The SQL both stores run, written once in PostgreSQL's ``$n`` parameter style.

``SqliteStore`` rewrites ``$n`` to SQLite's ``?n``, which binds the same positional
tuple. Only portable SQL lives here; what differs per dialect (DDL, the day of a
timestamp) stays in the store that needs it. Statements built from flags are
cached, so each variant's text is built once and stays stable for statement caches.
"""

from __future__ import annotations

import re
from functools import cache

from backend.records import ACTIVE_STATUSES, TERMINATED
from backend.store.codec import (
    API_KEY_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    PERMISSION_COLUMNS,
    PROXY_TOKEN_COLUMNS,
    SESSION_COLUMNS,
    USAGE_COLUMNS,
)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"


_KEY = ", ".join(API_KEY_COLUMNS)
_SESSION = ", ".join(SESSION_COLUMNS)
_MESSAGE = ", ".join(MESSAGE_COLUMNS)
_EVENT = ", ".join(EVENT_COLUMNS)

PING = "SELECT 1"

INSERT_KEY = _insert("api_keys", API_KEY_COLUMNS)
SELECT_KEY_BY_HASH = f"SELECT {_KEY} FROM api_keys WHERE key_hash = $1"
SELECT_KEY = f"SELECT {_KEY} FROM api_keys WHERE id = $1"
LIST_KEYS = f"SELECT {_KEY} FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC"
REVOKE_KEY = "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL"
# Never moves backwards: two processes may touch the same key out of order.
TOUCH_KEY = (
    "UPDATE api_keys SET last_used_at = $2 "
    "WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)"
)

INSERT_SESSION = _insert("sessions", SESSION_COLUMNS)
SELECT_SESSION = f"SELECT {_SESSION} FROM sessions WHERE id = $1"

# The statuses are constants of ours, checked to be plain words before they are
# inlined; inlining lets the planner see them.
if not all(re.fullmatch(r"[a-z]+", s) for s in ACTIVE_STATUSES):
    raise RuntimeError(f"ACTIVE_STATUSES must be plain words to inline them: {ACTIVE_STATUSES}")
COUNT_ACTIVE_SESSIONS = (
    "SELECT count(*) FROM sessions WHERE user_id = $1 AND status IN ("
    + ", ".join(f"'{s}'" for s in ACTIVE_STATUSES)
    + ")"
)

INSERT_MESSAGE = _insert("messages", MESSAGE_COLUMNS)

INSERT_EVENT = _insert("events", EVENT_COLUMNS)
LIST_EVENTS = (
    f"SELECT {_EVENT} FROM events WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
)

INSERT_USAGE = _insert("usage_records", USAGE_COLUMNS)

_PERMISSION = ", ".join(PERMISSION_COLUMNS)
INSERT_PERMISSION = _insert("permission_requests", PERMISSION_COLUMNS)
SELECT_PERMISSION = f"SELECT {_PERMISSION} FROM permission_requests WHERE id = $1"
LIST_PERMISSIONS = (
    f"SELECT {_PERMISSION} FROM permission_requests WHERE session_id = $1 ORDER BY created_at, id"
)
PENDING_PERMISSION_COUNTS = (
    "SELECT p.session_id, count(*) FROM permission_requests p "
    "JOIN sessions s ON s.id = p.session_id "
    "WHERE s.user_id = $1 AND p.decision IS NULL GROUP BY p.session_id"
)
# Only a pending request takes a decision: the first answer wins.
DECIDE_PERMISSION = (
    "UPDATE permission_requests SET decision = $2, decided_at = $3 "
    "WHERE id = $1 AND decision IS NULL"
)

_PROXY_TOKEN = ", ".join(f"t.{c}" for c in PROXY_TOKEN_COLUMNS)
INSERT_PROXY_TOKEN = _insert("proxy_tokens", PROXY_TOKEN_COLUMNS)
# Live: not revoked, and its session not terminated (a deleted session's tokens
# are refused even should their revocation have failed).
SELECT_LIVE_PROXY_TOKEN = (
    f"SELECT {_PROXY_TOKEN} FROM proxy_tokens t JOIN sessions s ON s.id = t.session_id "
    f"WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND s.status <> '{TERMINATED}'"
)
REVOKE_PROXY_TOKEN = (
    "UPDATE proxy_tokens SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL"
)
REVOKE_SESSION_PROXY_TOKENS = (
    "UPDATE proxy_tokens SET revoked_at = $2 WHERE session_id = $1 AND revoked_at IS NULL"
)


@cache
def list_sessions(*, status: bool, cursor: bool) -> str:
    """Newest first. Parameters: user_id, [status], [cursor created_at, cursor id], limit."""
    where = ["user_id = $1"]
    n = 1
    if status:
        n += 1
        where.append(f"status = ${n}")
    if cursor:
        # Strictly after the cursor in (created_at desc, id desc) order.
        where.append(f"(created_at, id) < (${n + 1}, ${n + 2})")
        n += 2
    return (
        f"SELECT {_SESSION} FROM sessions WHERE {' AND '.join(where)} "
        f"ORDER BY created_at DESC, id DESC LIMIT ${n + 1}"
    )


@cache
def sessions_by_status(count: int) -> str:
    """Sessions of every user whose status is one of ``count`` parameters."""
    placeholders = ", ".join(f"${i}" for i in range(1, count + 1))
    return (
        f"SELECT {_SESSION} FROM sessions WHERE status IN ({placeholders}) ORDER BY created_at, id"
    )


@cache
def update_by_id(table: str, names: tuple[str, ...]) -> str:
    """``UPDATE table SET name = $2, ... WHERE id = $1``.

    ``names`` must come from a whitelist (``codec.check_changes``), never from input.
    """
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    return f"UPDATE {table} SET {sets} WHERE id = $1"


@cache
def list_messages(*, before: bool, limit: bool) -> str:
    """Parameters: session_id, [before message id], [limit].

    Ordered by (created_at, pos): ``pos`` is the insertion order, which settles
    ties in created_at. With a limit the newest ones are taken, in reverse order;
    the caller flips them back to oldest first.
    """
    where = "session_id = $1"
    n = 1
    if before:
        n += 1
        # An unknown ``before`` id makes the comparison NULL: no rows.
        where += (
            " AND (created_at, pos) < "
            f"(SELECT b.created_at, b.pos FROM messages b WHERE b.id = ${n} AND b.session_id = $1)"
        )
    if limit:
        return (
            f"SELECT {_MESSAGE} FROM messages WHERE {where} "
            f"ORDER BY created_at DESC, pos DESC LIMIT ${n + 1}"
        )
    return f"SELECT {_MESSAGE} FROM messages WHERE {where} ORDER BY created_at, pos"


@cache
def usage_by_day(day: str, *, start: bool, end: bool, session: bool) -> str:
    """Usage summed per (day, event type), ordered by day then type.

    ``day`` is the dialect's expression for the UTC day of ``created_at`` as
    ``YYYY-MM-DD``. Parameters: user_id, [start (inclusive)], [end (exclusive)],
    [session_id].
    """
    where = ["user_id = $1"]
    n = 1
    if start:
        n += 1
        where.append(f"created_at >= ${n}")
    if end:
        n += 1
        where.append(f"created_at < ${n}")
    if session:
        n += 1
        where.append(f"session_id = ${n}")
    return (
        f"SELECT {day} AS day, event_type, sum(quantity) AS quantity FROM usage_records "
        f"WHERE {' AND '.join(where)} GROUP BY 1, 2 ORDER BY 1, 2"
    )
