"""``SqliteStore``: the embedded default store, one SQLite file through aiosqlite.

Two connections, each on its own aiosqlite thread: a writer, used under an
``asyncio.Lock`` so that writes (and multi-statement transactions) never
interleave, and a reader, which WAL lets run while a write is in progress. The
connections open lazily on first use, and reopen after a failure that left them
unusable (the file vanished, an I/O error), so a store recovers by itself.

A third, plain ``sqlite3`` connection answers point lookups (a key by hash or id,
a user's keys, a session, a count) on the event loop's own thread: such a read
takes a few microseconds, while the hop to an aiosqlite thread and back costs
about 100 µs of the loop's time and was most of an authenticated request's cost.
It never waits for a lock (``busy_timeout = 0``; in WAL mode a reader is not
blocked by writers): should SQLite answer "busy", the read goes to the threaded
reader instead. Reads whose size the caller chooses (lists of sessions,
messages, events) always go to the threaded reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import aiosqlite

from backend.errors import StoreUnavailable
from backend.records import (
    MESSAGE_MUTABLE_FIELDS,
    SESSION_MUTABLE_FIELDS,
    ApiKey,
    EventRecord,
    MessageRecord,
    PermissionRequest,
    ProxyToken,
    SessionRecord,
    UsageRecord,
    utcnow,
)
from backend.store import sql
from backend.store.base import SessionCursor, UsageSummary
from backend.store.codec import (
    API_KEY_COLUMNS,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    PERMISSION_COLUMNS,
    PROXY_TOKEN_COLUMNS,
    SESSION_COLUMNS,
    USAGE_COLUMNS,
    canonical_id,
    check_changes,
    check_limit,
    clean_text,
    dump_json,
    format_time,
    load_json,
    optional_id,
    parse_time,
    require_id,
    summarise_usage,
    tool_calls_from_json,
    tool_calls_to_json,
)
from backend.store.migrate import load_migrations, pending_migrations

log = logging.getLogger(__name__)

_MEMORY = ":memory:"
# Primary result codes that mean "the database cannot be used right now", as
# opposed to a bug in a statement.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)
# Of those, the ones after which the connections are reopened rather than reused.
_BROKEN_CODES = frozenset(
    {sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_READONLY}
)

_CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     TEXT PRIMARY KEY,
    checksum    TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)"""
_DAY = "substr(created_at, 1, 10)"
_AIOSQLITE_CLOSED = frozenset({"Connection closed", "no active connection"})


@cache
def _primary_code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of an error (extended codes folded), 0 if none."""
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _q(statement: str) -> str:
    """A shared ``$n`` statement in SQLite's ``?n`` style (same positional binding)."""
    return re.sub(r"\$(\d+)", r"?\1", statement)


def _statements(script: str) -> list[str]:
    """Split a migration script into statements, for running inside our own
    transaction (``executescript`` would commit it first). ``complete_statement``
    knows SQLite's grammar, so semicolons in strings or triggers are no trap."""
    statements, start = [], 0
    for i, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : i + 1]):
            statements.append(script[start : i + 1].strip())
            start = i + 1
    return statements


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)


def _parse(value: str | None) -> datetime | None:
    return None if value is None else parse_time(value)


def _params(columns: tuple[str, ...], values: dict[str, Any]) -> tuple[Any, ...]:
    """Values in column order, every string cleaned of NULs (see ``codec``)."""
    return tuple(
        clean_text(v) if isinstance(v, str) else v for v in map(values.__getitem__, columns)
    )


def _key_params(k: ApiKey) -> tuple[Any, ...]:
    values = vars(k) | {
        "id": require_id(k.id, "key id"),
        "scopes": dump_json(list(k.scopes)),
        "created_at": format_time(k.created_at),
        "last_used_at": _time(k.last_used_at),
        "expires_at": _time(k.expires_at),
        "revoked_at": _time(k.revoked_at),
    }
    return _params(API_KEY_COLUMNS, values)


def _session_params(s: SessionRecord) -> tuple[Any, ...]:
    values = vars(s) | {
        "id": require_id(s.id, "session id"),
        "api_key_id": optional_id(s.api_key_id, "api_key_id"),
        "created_at": format_time(s.created_at),
        "last_activity_at": format_time(s.last_activity_at),
        "error": None if s.error is None else dump_json(s.error),
        "options": dump_json(s.options or {}),
    }
    return _params(SESSION_COLUMNS, values)


def _message_params(m: MessageRecord) -> tuple[Any, ...]:
    values = vars(m) | {
        "id": require_id(m.id, "message id"),
        "session_id": require_id(m.session_id, "session id"),
        "created_at": format_time(m.created_at),
        "tool_calls": dump_json(tool_calls_to_json(m.tool_calls)),
        "usage": None if m.usage is None else dump_json(m.usage),
        "model_messages": dump_json(list(m.model_messages)),
    }
    return _params(MESSAGE_COLUMNS, values)


def _event_params(e: EventRecord) -> tuple[Any, ...]:
    values = vars(e) | {
        "session_id": require_id(e.session_id, "session id"),
        "data": dump_json(e.data),
        "created_at": format_time(e.created_at),
    }
    return _params(EVENT_COLUMNS, values)


def _usage_params(r: UsageRecord) -> tuple[Any, ...]:
    values = vars(r) | {
        "id": require_id(r.id, "usage id"),
        "session_id": optional_id(r.session_id, "session id"),
        "quantity": float(r.quantity),
        "created_at": format_time(r.created_at),
    }
    return _params(USAGE_COLUMNS, values)


def _key(row: Iterable[Any]) -> ApiKey:
    v = dict(zip(API_KEY_COLUMNS, row, strict=True))
    v["scopes"] = load_json(v["scopes"])
    for name in ("created_at", "last_used_at", "expires_at", "revoked_at"):
        v[name] = _parse(v[name])
    return ApiKey(**v)


def _session(row: Iterable[Any]) -> SessionRecord:
    v = dict(zip(SESSION_COLUMNS, row, strict=True))
    v["created_at"] = parse_time(v["created_at"])
    v["last_activity_at"] = parse_time(v["last_activity_at"])
    v["error"] = load_json(v["error"])
    v["options"] = load_json(v["options"]) or {}
    return SessionRecord(**v)


def _message(row: Iterable[Any]) -> MessageRecord:
    v = dict(zip(MESSAGE_COLUMNS, row, strict=True))
    v["created_at"] = parse_time(v["created_at"])
    v["tool_calls"] = tool_calls_from_json(load_json(v["tool_calls"]))
    v["usage"] = load_json(v["usage"])
    v["model_messages"] = load_json(v["model_messages"])
    return MessageRecord(**v)


def _event(row: Iterable[Any]) -> EventRecord:
    session_id, seq, type_, data, created_at = row
    return EventRecord(session_id, seq, type_, load_json(data), parse_time(created_at))


def _permission_params(p: PermissionRequest) -> tuple[Any, ...]:
    values = vars(p) | {
        "id": require_id(p.id, "permission request id"),
        "session_id": require_id(p.session_id, "session id"),
        "message_id": require_id(p.message_id, "message id"),
        "input": dump_json(p.input),
        "created_at": format_time(p.created_at),
        "decided_at": _time(p.decided_at),
    }
    return _params(PERMISSION_COLUMNS, values)


def _permission(row: Iterable[Any]) -> PermissionRequest:
    v = dict(zip(PERMISSION_COLUMNS, row, strict=True))
    v["input"] = load_json(v["input"]) or {}
    v["created_at"] = parse_time(v["created_at"])
    v["decided_at"] = _parse(v["decided_at"])
    return PermissionRequest(**v)


def _proxy_token_params(t: ProxyToken) -> tuple[Any, ...]:
    values = vars(t) | {
        "session_id": require_id(t.session_id, "session id"),
        "created_at": format_time(t.created_at),
        "revoked_at": _time(t.revoked_at),
    }
    return _params(PROXY_TOKEN_COLUMNS, values)


def _proxy_token(row: Iterable[Any]) -> ProxyToken:
    v = dict(zip(PROXY_TOKEN_COLUMNS, row, strict=True))
    v["created_at"] = parse_time(v["created_at"])
    v["revoked_at"] = _parse(v["revoked_at"])
    return ProxyToken(**v)


def _session_change(name: str, value: Any) -> Any:
    if name == "last_activity_at":
        return format_time(value)
    if name == "error":
        return None if value is None else dump_json(value)
    if name == "options":
        return dump_json(value or {})
    return clean_text(value) if isinstance(value, str) else value


def _message_change(name: str, value: Any) -> Any:
    if name == "tool_calls":
        return dump_json(tool_calls_to_json(value or ()))
    if name == "model_messages":
        return dump_json(list(value or ()))
    if name == "usage":
        return None if value is None else dump_json(value)
    return clean_text(value) if isinstance(value, str) else value


class SqliteStore:
    """The ``Store`` on a SQLite file (WAL, ``synchronous=NORMAL``, foreign keys on).

    ``path`` may be ``":memory:"`` for a private in-memory database (tests); the
    reader is then the writer. Call ``migrate()`` before use and ``close()`` at the
    end: aiosqlite's threads keep the process alive until closed.
    """

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._memory = str(path) == _MEMORY
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._connect_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # connections

    def _prepare_file(self) -> None:
        # Created here, private, before SQLite sees it: SQLite then gives the -wal
        # and -shm files the same mode. An existing file keeps the mode it has.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))

    async def _open_connection(self, *, writer: bool) -> aiosqlite.Connection:
        # isolation_level=None: no implicit BEGIN; transactions are explicit.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute_fetchall(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            await conn.execute_fetchall("PRAGMA foreign_keys = ON")
            await conn.execute_fetchall("PRAGMA synchronous = NORMAL")
            if writer and not self._memory:
                # Persistent in the file; lets the reader work during a write.
                await self._enable_wal(conn)
            if not writer:
                await conn.execute_fetchall("PRAGMA query_only = ON")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _enable_wal(self, conn: aiosqlite.Connection) -> None:
        """Switch to WAL. The switch needs the file to itself and SQLite's busy
        handler does not cover it, so while another connection (a second process
        migrating at the same moment) holds a lock, wait and try again."""
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                await conn.execute_fetchall("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)

    async def _connections(self) -> tuple[aiosqlite.Connection, aiosqlite.Connection]:
        """(writer, reader), opened on first use; ``StoreUnavailable`` if they cannot be."""
        if self._closed:
            raise StoreUnavailable("The store is closed")
        writer, reader = self._writer, self._reader
        if writer is not None and reader is not None:
            return writer, reader
        async with self._connect_lock:
            if self._writer is None or self._reader is None:
                await self._open()
            assert self._writer is not None and self._reader is not None
            return self._writer, self._reader

    async def _open(self) -> None:
        try:
            if not self._memory:
                await asyncio.to_thread(self._prepare_file)
            writer = await self._open_connection(writer=True)
            try:
                reader = writer if self._memory else await self._open_connection(writer=False)
            except BaseException:
                await writer.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        self._writer, self._reader = writer, reader

    async def _drop_connections(self) -> None:
        writer, reader, inline = self._writer, self._reader, self._inline
        self._writer = self._reader = self._inline = None
        if inline is not None:
            with contextlib.suppress(Exception):
                inline.close()
        for conn in {id(c): c for c in (reader, writer) if c is not None}.values():
            with contextlib.suppress(Exception):
                await conn.close()

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        # The client-facing message stays generic (a server must not show its file
        # paths); the cause goes to the log and to __cause__.
        log.warning("SQLite database %s unavailable: %s: %s", self.path, type(exc).__name__, exc)
        return StoreUnavailable()

    @contextlib.asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        """Map driver errors: constraint violations to ``ValueError`` (a caller's bug),
        an unusable database to ``StoreUnavailable``; anything else is a bug here."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"Constraint violated: {exc}") from exc
        except sqlite3.Error as exc:
            code = _primary_code(exc)
            if code not in _UNAVAILABLE_CODES:
                raise
            if code in _BROKEN_CODES:
                await self._drop_connections()
            raise self._unavailable(exc) from exc
        except ValueError as exc:
            # aiosqlite's word for a connection closed under us (by close() or by a
            # reopen after a failure); nothing else in the block raises ValueError.
            if str(exc) in _AIOSQLITE_CLOSED:
                raise self._unavailable(exc) from exc
            raise

    async def _read(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        _, reader = await self._connections()
        async with self._errors():
            return list(await reader.execute_fetchall(_q(statement), params))

    def _inline_connection(self) -> sqlite3.Connection:
        """The loop-thread reader (opened once the threaded ones exist: the file
        is prepared and in WAL mode by then)."""
        conn = self._inline
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 0")
                conn.execute("PRAGMA query_only = ON")
            except BaseException:
                conn.close()
                raise
            self._inline = conn
        return conn

    async def _lookup(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """A point lookup (few rows, by an index), read on the loop thread; see the
        module docstring. Same errors as ``_read``."""
        if self._memory:
            return await self._read(statement, params)
        await self._connections()
        async with self._errors():
            try:
                return self._inline_connection().execute(_q(statement), params).fetchall()
            except sqlite3.OperationalError as exc:
                if _primary_code(exc) != sqlite3.SQLITE_BUSY:
                    raise
        return await self._read(statement, params)

    async def _write(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        writer, _ = await self._connections()
        # Under the lock even for one statement: it must not land inside another
        # coroutine's open transaction on the same connection.
        async with self._write_lock, self._errors():
            await writer.execute_fetchall(_q(statement), params)

    async def _write_many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert all rows in one transaction (all or none)."""
        if len(rows) == 1:
            await self._write(statement, rows[0])
            return
        writer, _ = await self._connections()
        async with self._write_lock, self._errors():
            try:
                # Inside the try: a caller cancelled while BEGIN runs must not leave
                # the shared writer in an open transaction.
                await writer.execute_fetchall("BEGIN IMMEDIATE")
                cursor = await writer.executemany(_q(statement), rows)
                await cursor.close()
                await writer.execute_fetchall("COMMIT")
            except BaseException:
                await self._rollback(writer)
                raise

    @staticmethod
    async def _rollback(writer: aiosqlite.Connection) -> None:
        # A failed COMMIT or a broken connection may have ended the transaction already.
        with contextlib.suppress(sqlite3.Error, ValueError):
            await writer.execute_fetchall("ROLLBACK")

    # lifecycle

    async def migrate(self) -> list[str]:
        """Apply pending migrations in one ``BEGIN IMMEDIATE`` transaction (which also
        serialises concurrent migrators); return the versions applied."""
        migrations = load_migrations("sqlite")
        writer, _ = await self._connections()
        async with self._write_lock, self._errors():
            await writer.execute_fetchall("BEGIN IMMEDIATE")
            try:
                await writer.execute_fetchall(_CREATE_SCHEMA_MIGRATIONS)
                rows = await writer.execute_fetchall(
                    "SELECT version, checksum FROM schema_migrations"
                )
                pending = pending_migrations(migrations, {v: c for v, c in rows})
                for migration in pending:
                    for statement in _statements(migration.sql):
                        await writer.execute_fetchall(statement)
                    await writer.execute_fetchall(
                        "INSERT INTO schema_migrations (version, checksum, applied_at) "
                        "VALUES (?1, ?2, ?3)",
                        (migration.version, migration.checksum, format_time(utcnow())),
                    )
                await writer.execute_fetchall("COMMIT")
            except BaseException:
                await self._rollback(writer)
                raise
        if pending:
            log.info("SQLite %s: applied migrations %s", self.path, [m.version for m in pending])
        return [m.version for m in pending]

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers ``SELECT 1``."""
        await self._read(sql.PING)

    async def close(self) -> None:
        """Close both connections; later calls raise ``StoreUnavailable``. Idempotent."""
        self._closed = True
        async with self._connect_lock:
            await self._drop_connections()

    # API keys

    async def create_key(self, key: ApiKey) -> None:
        """Insert a key; ``ValueError`` if its id or hash is already stored."""
        await self._write(sql.INSERT_KEY, _key_params(key))

    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose SHA-256 hex digest is ``key_hash`` (revoked ones included)."""
        rows = await self._lookup(sql.SELECT_KEY_BY_HASH, (key_hash,))
        return _key(rows[0]) if rows else None

    async def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, or None."""
        key_id = canonical_id(key_id)
        if key_id is None:
            return None
        rows = await self._lookup(sql.SELECT_KEY, (key_id,))
        return _key(rows[0]) if rows else None

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        """All keys of the user, revoked ones included, newest first."""
        return [_key(row) for row in await self._lookup(sql.LIST_KEYS, (user_id,))]

    async def revoke_key(self, key_id: str, at: datetime) -> None:
        """Set ``revoked_at`` unless already set (idempotent)."""
        key_id = canonical_id(key_id)
        if key_id is not None:
            await self._write(sql.REVOKE_KEY, (key_id, format_time(at)))

    async def touch_key(self, key_id: str, at: datetime) -> None:
        """Set ``last_used_at`` (never moving it backwards)."""
        key_id = canonical_id(key_id)
        if key_id is not None:
            await self._write(sql.TOUCH_KEY, (key_id, format_time(at)))

    # sessions

    async def create_session(self, session: SessionRecord) -> None:
        """Insert a session; ``ValueError`` if its id is already stored."""
        await self._write(sql.INSERT_SESSION, _session_params(session))

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session with this id (of any user), or None."""
        session_id = canonical_id(session_id)
        if session_id is None:
            return None
        rows = await self._lookup(sql.SELECT_SESSION, (session_id,))
        return _session(rows[0]) if rows else None

    async def list_sessions(
        self,
        user_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        after: SessionCursor | None = None,
    ) -> list[SessionRecord]:
        """The user's sessions, newest first (created_at desc, id desc), strictly
        after ``after`` when given."""
        check_limit(limit)
        params: list[Any] = [user_id]
        if status is not None:
            params.append(status)
        if after is not None:
            params += [format_time(after.created_at), require_id(after.id, "cursor id")]
        params.append(limit)
        statement = sql.list_sessions(status=status is not None, cursor=after is not None)
        return [_session(row) for row in await self._read(statement, tuple(params))]

    async def list_sessions_by_status(self, statuses: list[str]) -> list[SessionRecord]:
        """All sessions (of every user) in these statuses, oldest first."""
        statuses = sorted(set(statuses))
        if not statuses:
            return []
        rows = await self._read(sql.sessions_by_status(len(statuses)), tuple(statuses))
        return [_session(row) for row in rows]

    async def count_active_sessions(self, user_id: str) -> int:
        """Sessions of the user whose status is in ``records.ACTIVE_STATUSES``."""
        rows = await self._lookup(sql.COUNT_ACTIVE_SESSIONS, (user_id,))
        return int(rows[0][0])

    async def update_session(self, session_id: str, changes: dict[str, Any]) -> None:
        """Change the given fields (names from ``SESSION_MUTABLE_FIELDS``, else
        ``ValueError``); an unknown session is left alone."""
        names = check_changes(changes, SESSION_MUTABLE_FIELDS, "session")
        session_id = canonical_id(session_id)
        if not names or session_id is None:
            return
        values = tuple(_session_change(name, changes[name]) for name in names)
        await self._write(sql.update_by_id("sessions", tuple(names)), (session_id, *values))

    # messages

    async def add_message(self, message: MessageRecord) -> None:
        """Insert a message; ``ValueError`` for a duplicate id or an unknown session."""
        await self._write(sql.INSERT_MESSAGE, _message_params(message))

    async def update_message(self, message_id: str, changes: dict[str, Any]) -> None:
        """Change the given fields (names from ``MESSAGE_MUTABLE_FIELDS``, else
        ``ValueError``); an unknown message is left alone."""
        names = check_changes(changes, MESSAGE_MUTABLE_FIELDS, "message")
        message_id = canonical_id(message_id)
        if not names or message_id is None:
            return
        values = tuple(_message_change(name, changes[name]) for name in names)
        await self._write(sql.update_by_id("messages", tuple(names)), (message_id, *values))

    async def list_messages(
        self, session_id: str, *, limit: int | None = None, before: str | None = None
    ) -> list[MessageRecord]:
        """Messages oldest first; with ``limit`` the newest ``limit`` of them; with
        ``before`` only those ordered before that message (none if it is unknown)."""
        check_limit(limit)
        session_id = canonical_id(session_id)
        before_id = None if before is None else canonical_id(before)
        if session_id is None or (before is not None and before_id is None):
            return []
        params: list[Any] = [session_id]
        if before_id is not None:
            params.append(before_id)
        if limit is not None:
            params.append(limit)
        statement = sql.list_messages(before=before_id is not None, limit=limit is not None)
        messages = [_message(row) for row in await self._read(statement, tuple(params))]
        if limit is not None:
            messages.reverse()  # fetched newest first
        return messages

    # events

    async def append_events(self, events: list[EventRecord]) -> None:
        """Store events in one transaction; ``ValueError`` for a (session_id, seq)
        already stored or an unknown session (a bug in the caller)."""
        if not events:
            return
        await self._write_many(sql.INSERT_EVENT, [_event_params(e) for e in events])

    async def list_events(
        self, session_id: str, *, after_seq: int, limit: int = 1000
    ) -> list[EventRecord]:
        """Stored events with seq > ``after_seq``, in seq order."""
        check_limit(limit)
        session_id = canonical_id(session_id)
        if session_id is None:
            return []
        rows = await self._read(sql.LIST_EVENTS, (session_id, after_seq, limit))
        return [_event(row) for row in rows]

    # permission requests

    async def add_permission_request(self, request: PermissionRequest) -> None:
        """Store a new (pending) request."""
        await self._write(sql.INSERT_PERMISSION, _permission_params(request))

    async def get_permission_request(self, request_id: str) -> PermissionRequest | None:
        request_id = canonical_id(request_id)
        if request_id is None:
            return None
        rows = await self._read(sql.SELECT_PERMISSION, (request_id,))
        return _permission(rows[0]) if rows else None

    async def list_permission_requests(
        self, session_id: str, *, pending_only: bool = False
    ) -> list[PermissionRequest]:
        """A session's requests, oldest first (only the pending ones if asked)."""
        session_id = canonical_id(session_id)
        if session_id is None:
            return []
        found = [_permission(r) for r in await self._read(sql.LIST_PERMISSIONS, (session_id,))]
        return [r for r in found if r.decision is None] if pending_only else found

    async def decide_permission_request(
        self, request_id: str, decision: str, at: datetime
    ) -> PermissionRequest | None:
        """Record ``decision`` if the request is still pending (the first answer wins);
        return the request as stored afterwards (None if unknown)."""
        request_id = canonical_id(request_id)
        if request_id is None:
            return None
        await self._write(sql.DECIDE_PERMISSION, (request_id, decision, format_time(at)))
        return await self.get_permission_request(request_id)

    async def pending_permission_counts(self, user_id: str) -> dict[str, int]:
        """Session id -> pending requests, for the user's sessions that have some."""
        rows = await self._read(sql.PENDING_PERMISSION_COUNTS, (user_id,))
        return {str(session_id): int(count) for session_id, count in rows}

    # model-proxy tokens

    async def add_proxy_token(self, token: ProxyToken) -> None:
        """Store a new token (its digest); its session must exist."""
        await self._write(sql.INSERT_PROXY_TOKEN, _proxy_token_params(token))

    async def live_proxy_token(self, token_hash: str) -> ProxyToken | None:
        """The token with this digest if it is not revoked and its session is not
        terminated; else None."""
        rows = await self._lookup(sql.SELECT_LIVE_PROXY_TOKEN, (token_hash,))
        return _proxy_token(rows[0]) if rows else None

    async def revoke_proxy_token(self, token_hash: str, at: datetime) -> None:
        """Set ``revoked_at`` unless already set (idempotent)."""
        await self._write(sql.REVOKE_PROXY_TOKEN, (token_hash, format_time(at)))

    async def revoke_session_proxy_tokens(self, session_id: str, at: datetime) -> None:
        """Revoke every live token of the session (idempotent)."""
        session_id = canonical_id(session_id)
        if session_id is not None:
            await self._write(sql.REVOKE_SESSION_PROXY_TOKENS, (session_id, format_time(at)))

    # usage

    async def add_usage(self, records: list[UsageRecord]) -> None:
        """Store usage facts in one transaction."""
        if not records:
            return
        await self._write_many(sql.INSERT_USAGE, [_usage_params(r) for r in records])

    async def usage_summary(
        self,
        user_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        session_id: str | None = None,
    ) -> UsageSummary:
        """Usage of the user in [start, end), summed by type and by (UTC day, type)."""
        params: list[Any] = [user_id]
        if start is not None:
            params.append(format_time(start))
        if end is not None:
            params.append(format_time(end))
        if session_id is not None:
            params.append(canonical_id(session_id))
            if params[-1] is None:
                return UsageSummary(by_type={}, by_day=[])
        statement = sql.usage_by_day(
            _DAY, start=start is not None, end=end is not None, session=session_id is not None
        )
        return summarise_usage(await self._read(statement, tuple(params)))
