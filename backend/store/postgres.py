"""``PostgresStore``: the production store, an asyncpg pool.

The pool is created on first use (``migrate()`` creates it at start-up) and never
cached broken: if it cannot be created the next call tries again, and asyncpg
replaces dead connections by itself. Failures to reach the database become
``StoreUnavailable``; reads and idempotent updates that meet a connection killed
under them (server restart, ``pg_terminate_backend``, a pooler recycling it) are
retried once on a fresh connection. Inserts are not retried: whether a lost
insert committed is unknowable, and a blind retry could store it twice.

Works behind PgBouncer-style transaction poolers (Neon's ``-pooler`` hosts, or a
DSN with ``pgbouncer=true``): no prepared-statement cache there, no session state
(no ``SET``, no session advisory locks), nothing asyncpg cannot pass on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote_plus, urlsplit

import asyncpg
import asyncpg.exceptions as pg_errors

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
    optional_id,
    require_id,
    summarise_usage,
    tool_calls_from_json,
    tool_calls_to_json,
    utc_ms,
)
from backend.store.migrate import load_migrations, pending_migrations

log = logging.getLogger(__name__)

T = TypeVar("T")

# "agenttui" in ASCII: the advisory lock key that serialises migrators.
_MIGRATION_LOCK = 0x6167656E74747569
_CREATE_SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""
_DAY = "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

# The database cannot be reached or dropped the connection.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable, DNS, TLS
    TimeoutError,  # connect timeout, command_timeout, acquire timeout
    asyncpg.InterfaceError,  # "connection is closed", "pool is closed", ...
    pg_errors.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    pg_errors.OperatorInterventionError,  # class 57: admin shutdown, starting up, cancelled
    pg_errors.InsufficientResourcesError,  # class 53: too many connections, disk full
    # A connection killed while idle can look open until asyncpg reads the socket's
    # close; using it then fails with "cannot switch to state ...".
    pg_errors.InternalClientError,
)
# Of those, the ones that mean "this connection died; a fresh one may well work".
_RETRYABLE: tuple[type[BaseException], ...] = (
    pg_errors.ConnectionDoesNotExistError,
    pg_errors.AdminShutdownError,
    pg_errors.CrashShutdownError,
    ConnectionResetError,
    BrokenPipeError,
    pg_errors.InternalClientError,
)
# DSN query parameters that are ours or libpq's, not server settings: asyncpg
# would send them to the server as settings, and the connection would fail.
_STRIPPED_PARAMS = frozenset({"channel_binding", "pgbouncer"})


def prepare_dsn(dsn: str) -> tuple[str, bool]:
    """(the DSN asyncpg can take, whether it points at a transaction pooler).

    A pooler is a Neon pooled host (``-pooler`` in the host name) or a DSN marked
    ``pgbouncer=true``; there, prepared statements must not be cached. The
    ``channel_binding`` and ``pgbouncer`` parameters are removed.
    """
    parts = urlsplit(dsn)
    query = parse_qsl(parts.query, keep_blank_values=True)
    hosts = [parts.netloc.rpartition("@")[2]] + [v for k, v in query if k == "host"]
    pooled = any("-pooler" in host for host in hosts) or any(
        k == "pgbouncer" and v.lower() in ("true", "1", "yes", "on") for k, v in query
    )
    if not any(k in _STRIPPED_PARAMS for k, _ in query):
        return dsn, pooled
    # Drop the raw pieces rather than re-encode the query: the rest stays byte for
    # byte as given (and "postgresql:///db?host=..." keeps its empty host).
    kept = [
        piece
        for piece in parts.query.split("&")
        if unquote_plus(piece.partition("=")[0]) not in _STRIPPED_PARAMS
    ]
    base, _, _ = dsn.partition("?")
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return base + (f"?{'&'.join(kept)}" if kept else "") + fragment, pooled


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns in and out as Python objects, through the same encoder as SQLite.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=dump_json, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Replaces asyncpg's default reset (``RESET ALL; UNLISTEN *; ...``), a round trip
    on every release. The pool's connections never hold session state; asyncpg
    still rolls back a transaction left open before this runs. The default reset
    also happened to weed out dead connections; ``_run`` terminates those itself."""


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def _key(row: asyncpg.Record) -> ApiKey:
    v = dict(row)
    v["id"] = str(v["id"])
    v["scopes"] = list(v["scopes"])
    return ApiKey(**v)


def _session(row: asyncpg.Record) -> SessionRecord:
    v = dict(row)
    v["id"] = str(v["id"])
    v["api_key_id"] = _id(v["api_key_id"])
    return SessionRecord(**v)


def _message(row: asyncpg.Record) -> MessageRecord:
    v = dict(row)
    v["id"] = str(v["id"])
    v["session_id"] = str(v["session_id"])
    v["tool_calls"] = tool_calls_from_json(v["tool_calls"])
    return MessageRecord(**v)


def _event(row: asyncpg.Record) -> EventRecord:
    session_id, seq, type_, data, created_at = row
    return EventRecord(str(session_id), seq, type_, data, created_at)


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else utc_ms(value)


def _permission_params(p: PermissionRequest) -> tuple[Any, ...]:
    values = vars(p) | {
        "id": require_id(p.id, "permission request id"),
        "session_id": require_id(p.session_id, "session id"),
        "message_id": require_id(p.message_id, "message id"),
        "created_at": utc_ms(p.created_at),
        "decided_at": _time(p.decided_at),
    }
    return _params(PERMISSION_COLUMNS, values)


def _permission(row: asyncpg.Record) -> PermissionRequest:
    v = dict(row)
    for name in ("id", "session_id", "message_id"):
        v[name] = str(v[name])
    return PermissionRequest(**v)


def _proxy_token_params(t: ProxyToken) -> tuple[Any, ...]:
    values = vars(t) | {
        "session_id": require_id(t.session_id, "session id"),
        "created_at": utc_ms(t.created_at),
        "revoked_at": _time(t.revoked_at),
    }
    return _params(PROXY_TOKEN_COLUMNS, values)


def _proxy_token(row: asyncpg.Record) -> ProxyToken:
    v = dict(row)
    v["session_id"] = str(v["session_id"])
    return ProxyToken(**v)


def _params(columns: tuple[str, ...], values: dict[str, Any]) -> tuple[Any, ...]:
    """Values in column order, every string cleaned of NULs (see ``codec``)."""
    return tuple(
        clean_text(v) if isinstance(v, str) else v for v in map(values.__getitem__, columns)
    )


def _key_params(k: ApiKey) -> tuple[Any, ...]:
    values = vars(k) | {
        "id": require_id(k.id, "key id"),
        "scopes": [clean_text(s) for s in k.scopes],
        "created_at": utc_ms(k.created_at),
        "last_used_at": _time(k.last_used_at),
        "expires_at": _time(k.expires_at),
        "revoked_at": _time(k.revoked_at),
    }
    return _params(API_KEY_COLUMNS, values)


def _session_params(s: SessionRecord) -> tuple[Any, ...]:
    values = vars(s) | {
        "id": require_id(s.id, "session id"),
        "api_key_id": optional_id(s.api_key_id, "api_key_id"),
        "created_at": utc_ms(s.created_at),
        "last_activity_at": utc_ms(s.last_activity_at),
        "sandbox_seconds": float(s.sandbox_seconds),
    }
    return _params(SESSION_COLUMNS, values)


def _message_params(m: MessageRecord) -> tuple[Any, ...]:
    values = vars(m) | {
        "id": require_id(m.id, "message id"),
        "session_id": require_id(m.session_id, "session id"),
        "created_at": utc_ms(m.created_at),
        "tool_calls": tool_calls_to_json(m.tool_calls),
        "model_messages": list(m.model_messages),
    }
    return _params(MESSAGE_COLUMNS, values)


def _event_params(e: EventRecord) -> tuple[Any, ...]:
    values = vars(e) | {
        "session_id": require_id(e.session_id, "session id"),
        "created_at": utc_ms(e.created_at),
    }
    return _params(EVENT_COLUMNS, values)


def _usage_params(r: UsageRecord) -> tuple[Any, ...]:
    values = vars(r) | {
        "id": require_id(r.id, "usage id"),
        "session_id": optional_id(r.session_id, "session id"),
        "quantity": float(r.quantity),
        "created_at": utc_ms(r.created_at),
    }
    return _params(USAGE_COLUMNS, values)


def _session_change(name: str, value: Any) -> Any:
    if name == "last_activity_at":
        return utc_ms(value)
    if name == "sandbox_seconds":
        return float(value)
    return clean_text(value) if isinstance(value, str) else value


def _message_change(name: str, value: Any) -> Any:
    if name == "tool_calls":
        return tool_calls_to_json(value or ())
    if name == "model_messages":
        return list(value or ())
    return clean_text(value) if isinstance(value, str) else value


class PostgresStore:
    """The ``Store`` on PostgreSQL through an asyncpg pool.

    ``dsn`` is a ``postgres(ql)://`` URL. ``connect_timeout`` bounds each connection
    attempt and each wait for a pooled connection; ``command_timeout`` bounds each
    statement. Call ``migrate()`` at start-up and ``close()`` at the end.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        self._dsn, self.pooled = prepare_dsn(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        parts = urlsplit(self._dsn)
        return f"PostgresStore(host={parts.hostname!r}, database={parts.path.lstrip('/')!r})"

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            # A transaction pooler may hand each statement to another server
            # connection, where a cached prepared statement does not exist.
            "statement_cache_size": 0 if self.pooled else 100,
            "timeout": self._connect_timeout,
            "server_settings": {"application_name": "agent-tui"},
        }

    # connections and errors

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        # The client-facing message stays generic (no hosts, no SQL); the cause
        # goes to the log and to __cause__.
        log.warning("PostgreSQL unavailable: %s: %s", type(exc).__name__, exc)
        return StoreUnavailable()

    async def _get_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise StoreUnavailable("The store is closed")
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                pool = asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    init=_init_connection,
                    reset=_reset_connection,
                    command_timeout=self._command_timeout,
                    max_inactive_connection_lifetime=300.0,
                    **self._connect_kwargs(),
                )
                try:
                    await pool
                except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                    # Not kept: the next call builds a new pool and tries again.
                    pool.terminate()
                    raise self._unavailable(exc) from exc
                self._pool = pool
            return self._pool

    async def _run(
        self, work: Callable[[asyncpg.Connection], Awaitable[T]], *, retry: bool = False
    ) -> T:
        """Run ``work`` on a pooled connection, mapping driver errors: unreachable to
        ``StoreUnavailable``, constraint and data errors to ``ValueError`` (a caller's
        bug). With ``retry`` (safe only for reads and idempotent writes), a connection
        that died under ``work`` is replaced and ``work`` runs once more."""
        attempts = 2 if retry else 1
        for attempt in range(1, attempts + 1):
            pool = await self._get_pool()
            try:
                conn = await pool.acquire(timeout=self._connect_timeout)
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                # Errors while connecting (bad password, missing database, ...) are
                # as fatal to this call as a refused connection.
                raise self._unavailable(exc) from exc
            broken = False
            try:
                return await work(conn)
            except _UNAVAILABLE as exc:
                broken = True
                if attempt == attempts or not isinstance(exc, _RETRYABLE):
                    raise self._unavailable(exc) from exc
                log.info("PostgreSQL connection lost (%s); retrying once", type(exc).__name__)
            except pg_errors.IntegrityConstraintViolationError as exc:
                raise ValueError(f"Constraint violated: {exc}") from exc
            except asyncpg.DataError as exc:
                raise ValueError(f"Invalid value: {exc}") from exc
            finally:
                if broken:
                    # It may still look open, and our reset does not probe it:
                    # close it so the pool connects afresh instead of handing it out.
                    # (If asyncpg saw it die, it is already detached: nothing to do.)
                    with contextlib.suppress(asyncpg.InterfaceError):
                        conn.terminate()
                with contextlib.suppress(Exception):
                    # Fails only for a connection that is gone; the pool replaces it.
                    await pool.release(conn)
        raise AssertionError("unreachable")

    async def _fetch(self, statement: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda conn: conn.fetch(statement, *args), retry=True)

    async def _fetchrow(self, statement: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda conn: conn.fetchrow(statement, *args), retry=True)

    async def _execute(self, statement: str, *args: Any, idempotent: bool) -> None:
        await self._run(lambda conn: conn.execute(statement, *args), retry=idempotent)

    async def _execute_many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) == 1:
            await self._execute(statement, *rows[0], idempotent=False)
        else:
            # One round trip; asyncpg runs it in a transaction (all rows or none).
            await self._run(lambda conn: conn.executemany(statement, rows))

    # lifecycle

    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the versions applied.

        Runs on a dedicated connection (not the pool). Each migration runs in its
        own transaction that first takes ``pg_advisory_xact_lock``: concurrent
        migrators queue on it and re-read ``schema_migrations`` once they hold it,
        so each file runs once. A transaction-scoped lock (rather than a session
        lock) is also correct through a transaction pooler, and can never be left
        held. Then creates the pool, so a bad configuration fails at start-up.
        """
        migrations = load_migrations("postgres")
        if self._closed:
            raise StoreUnavailable("The store is closed")
        try:
            conn = await asyncpg.connect(self._dsn, **self._connect_kwargs())
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise self._unavailable(exc) from exc
        applied: list[str] = []
        try:
            while True:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await conn.execute(_CREATE_SCHEMA_MIGRATIONS)
                    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
                    pending = pending_migrations(migrations, {r[0]: r[1] for r in rows})
                    if not pending:
                        break
                    migration = pending[0]
                    # No arguments: the simple query protocol, which runs many statements.
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                        migration.version,
                        migration.checksum,
                    )
                applied.append(migration.version)
                log.info("PostgreSQL: applied migration %s", migration.version)
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                await conn.close(timeout=self._connect_timeout)
        await self._get_pool()
        return applied

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers ``SELECT 1``."""
        await self._fetch(sql.PING)

    async def close(self) -> None:
        """Close the pool; later calls raise ``StoreUnavailable``. Idempotent."""
        self._closed = True
        async with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), timeout=self._connect_timeout)
        except Exception:
            # Connections still busy or the server is gone: do not wait for them.
            pool.terminate()

    # API keys

    async def create_key(self, key: ApiKey) -> None:
        """Insert a key; ``ValueError`` if its id or hash is already stored."""
        await self._execute(sql.INSERT_KEY, *_key_params(key), idempotent=False)

    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """The key whose SHA-256 hex digest is ``key_hash`` (revoked ones included)."""
        row = await self._fetchrow(sql.SELECT_KEY_BY_HASH, key_hash)
        return None if row is None else _key(row)

    async def get_key(self, key_id: str) -> ApiKey | None:
        """The key with this id, or None."""
        key_id = canonical_id(key_id)
        if key_id is None:
            return None
        row = await self._fetchrow(sql.SELECT_KEY, key_id)
        return None if row is None else _key(row)

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        """All keys of the user, revoked ones included, newest first."""
        return [_key(row) for row in await self._fetch(sql.LIST_KEYS, user_id)]

    async def revoke_key(self, key_id: str, at: datetime) -> None:
        """Set ``revoked_at`` unless already set (idempotent)."""
        key_id = canonical_id(key_id)
        if key_id is not None:
            await self._execute(sql.REVOKE_KEY, key_id, utc_ms(at), idempotent=True)

    async def touch_key(self, key_id: str, at: datetime) -> None:
        """Set ``last_used_at`` (never moving it backwards)."""
        key_id = canonical_id(key_id)
        if key_id is not None:
            await self._execute(sql.TOUCH_KEY, key_id, utc_ms(at), idempotent=True)

    # sessions

    async def create_session(self, session: SessionRecord) -> None:
        """Insert a session; ``ValueError`` if its id is already stored."""
        await self._execute(sql.INSERT_SESSION, *_session_params(session), idempotent=False)

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session with this id (of any user), or None."""
        session_id = canonical_id(session_id)
        if session_id is None:
            return None
        row = await self._fetchrow(sql.SELECT_SESSION, session_id)
        return None if row is None else _session(row)

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
        args: list[Any] = [user_id]
        if status is not None:
            args.append(status)
        if after is not None:
            args += [utc_ms(after.created_at), require_id(after.id, "cursor id")]
        args.append(limit)
        statement = sql.list_sessions(status=status is not None, cursor=after is not None)
        return [_session(row) for row in await self._fetch(statement, *args)]

    async def list_sessions_by_status(self, statuses: list[str]) -> list[SessionRecord]:
        """All sessions (of every user) in these statuses, oldest first."""
        statuses = sorted(set(statuses))
        if not statuses:
            return []
        rows = await self._fetch(sql.sessions_by_status(len(statuses)), *statuses)
        return [_session(row) for row in rows]

    async def count_active_sessions(self, user_id: str) -> int:
        """Sessions of the user whose status is in ``records.ACTIVE_STATUSES``."""
        row = await self._fetchrow(sql.COUNT_ACTIVE_SESSIONS, user_id)
        assert row is not None
        return int(row[0])

    async def update_session(self, session_id: str, changes: dict[str, Any]) -> None:
        """Change the given fields (names from ``SESSION_MUTABLE_FIELDS``, else
        ``ValueError``); an unknown session is left alone."""
        names = check_changes(changes, SESSION_MUTABLE_FIELDS, "session")
        session_id = canonical_id(session_id)
        if not names or session_id is None:
            return
        values = [_session_change(name, changes[name]) for name in names]
        statement = sql.update_by_id("sessions", tuple(names))
        # Sets absolute values, so running it twice is harmless: retry is safe.
        await self._execute(statement, session_id, *values, idempotent=True)

    # messages

    async def add_message(self, message: MessageRecord) -> None:
        """Insert a message; ``ValueError`` for a duplicate id or an unknown session."""
        await self._execute(sql.INSERT_MESSAGE, *_message_params(message), idempotent=False)

    async def update_message(self, message_id: str, changes: dict[str, Any]) -> None:
        """Change the given fields (names from ``MESSAGE_MUTABLE_FIELDS``, else
        ``ValueError``); an unknown message is left alone."""
        names = check_changes(changes, MESSAGE_MUTABLE_FIELDS, "message")
        message_id = canonical_id(message_id)
        if not names or message_id is None:
            return
        values = [_message_change(name, changes[name]) for name in names]
        statement = sql.update_by_id("messages", tuple(names))
        await self._execute(statement, message_id, *values, idempotent=True)

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
        args: list[Any] = [session_id]
        if before_id is not None:
            args.append(before_id)
        if limit is not None:
            args.append(limit)
        statement = sql.list_messages(before=before_id is not None, limit=limit is not None)
        messages = [_message(row) for row in await self._fetch(statement, *args)]
        if limit is not None:
            messages.reverse()  # fetched newest first
        return messages

    # events

    async def append_events(self, events: list[EventRecord]) -> None:
        """Store events in one transaction; ``ValueError`` for a (session_id, seq)
        already stored or an unknown session (a bug in the caller)."""
        if events:
            await self._execute_many(sql.INSERT_EVENT, [_event_params(e) for e in events])

    async def list_events(
        self, session_id: str, *, after_seq: int, limit: int = 1000
    ) -> list[EventRecord]:
        """Stored events with seq > ``after_seq``, in seq order."""
        check_limit(limit)
        session_id = canonical_id(session_id)
        if session_id is None:
            return []
        rows = await self._fetch(sql.LIST_EVENTS, session_id, after_seq, limit)
        return [_event(row) for row in rows]

    # permission requests

    async def add_permission_request(self, request: PermissionRequest) -> None:
        """Store a new (pending) request."""
        await self._execute(sql.INSERT_PERMISSION, *_permission_params(request), idempotent=False)

    async def get_permission_request(self, request_id: str) -> PermissionRequest | None:
        request_id = canonical_id(request_id)
        if request_id is None:
            return None
        row = await self._fetchrow(sql.SELECT_PERMISSION, request_id)
        return _permission(row) if row is not None else None

    async def list_permission_requests(
        self, session_id: str, *, pending_only: bool = False
    ) -> list[PermissionRequest]:
        """A session's requests, oldest first (only the pending ones if asked)."""
        session_id = canonical_id(session_id)
        if session_id is None:
            return []
        found = [_permission(r) for r in await self._fetch(sql.LIST_PERMISSIONS, session_id)]
        return [r for r in found if r.decision is None] if pending_only else found

    async def decide_permission_request(
        self, request_id: str, decision: str, at: datetime
    ) -> PermissionRequest | None:
        """Record ``decision`` if the request is still pending (the first answer wins);
        return the request as stored afterwards (None if unknown)."""
        request_id = canonical_id(request_id)
        if request_id is None:
            return None
        # Idempotent: a retry cannot overwrite the decision that won.
        await self._execute(
            sql.DECIDE_PERMISSION, request_id, decision, utc_ms(at), idempotent=True
        )
        return await self.get_permission_request(request_id)

    async def pending_permission_counts(self, user_id: str) -> dict[str, int]:
        """Session id -> pending requests, for the user's sessions that have some."""
        rows = await self._fetch(sql.PENDING_PERMISSION_COUNTS, user_id)
        return {str(r[0]): int(r[1]) for r in rows}

    # model-proxy tokens

    async def add_proxy_token(self, token: ProxyToken) -> None:
        """Store a new token (its digest); its session must exist."""
        await self._execute(sql.INSERT_PROXY_TOKEN, *_proxy_token_params(token), idempotent=False)

    async def live_proxy_token(self, token_hash: str) -> ProxyToken | None:
        """The token with this digest if it is not revoked and its session is not
        terminated; else None."""
        row = await self._fetchrow(sql.SELECT_LIVE_PROXY_TOKEN, token_hash)
        return None if row is None else _proxy_token(row)

    async def revoke_proxy_token(self, token_hash: str, at: datetime) -> None:
        """Set ``revoked_at`` unless already set (idempotent)."""
        await self._execute(sql.REVOKE_PROXY_TOKEN, token_hash, utc_ms(at), idempotent=True)

    async def revoke_session_proxy_tokens(self, session_id: str, at: datetime) -> None:
        """Revoke every live token of the session (idempotent)."""
        session_id = canonical_id(session_id)
        if session_id is not None:
            await self._execute(
                sql.REVOKE_SESSION_PROXY_TOKENS, session_id, utc_ms(at), idempotent=True
            )

    # usage

    async def add_usage(self, records: list[UsageRecord]) -> None:
        """Store usage facts in one transaction."""
        if records:
            await self._execute_many(sql.INSERT_USAGE, [_usage_params(r) for r in records])

    async def usage_summary(
        self,
        user_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        session_id: str | None = None,
    ) -> UsageSummary:
        """Usage of the user in [start, end), summed by type and by (UTC day, type)."""
        args: list[Any] = [user_id]
        if start is not None:
            args.append(utc_ms(start))
        if end is not None:
            args.append(utc_ms(end))
        if session_id is not None:
            args.append(canonical_id(session_id))
            if args[-1] is None:
                return UsageSummary(by_type={}, by_day=[])
        statement = sql.usage_by_day(
            _DAY, start=start is not None, end=end is not None, session=session_id is not None
        )
        return summarise_usage(await self._fetch(statement, *args))

    # leases (replicas mode: see backend/sessions/lease.py)

    async def acquire_lease(self, session_id: str, owner: str, ttl: float) -> int | None:
        """Take the session's lease for ``ttl`` seconds if it is free or expired;
        return its token (rises with every new holder), or None if another holds it."""
        row = await self._run(
            lambda conn: conn.fetchrow(
                """
                INSERT INTO session_leases AS l (session_id, owner, token, expires_at)
                VALUES ($1, $2, 1, now() + make_interval(secs => $3))
                ON CONFLICT (session_id) DO UPDATE
                    SET owner = EXCLUDED.owner, token = l.token + 1,
                        expires_at = EXCLUDED.expires_at
                    WHERE l.expires_at < now()
                RETURNING token
                """,
                require_id(session_id, "session_id"),
                owner,
                float(ttl),
            )
        )
        return None if row is None else int(row[0])

    async def renew_lease(self, session_id: str, owner: str, token: int, ttl: float) -> bool:
        """Extend a held lease by ``ttl`` seconds from now; False if it was lost. A late
        renewal still succeeds while nobody took the lease (taking it changes the token)."""
        row = await self._fetchrow(
            """
            UPDATE session_leases SET expires_at = now() + make_interval(secs => $4)
            WHERE session_id = $1 AND owner = $2 AND token = $3
            RETURNING 1
            """,
            require_id(session_id, "session_id"),
            owner,
            token,
            float(ttl),
        )
        return row is not None

    async def renew_leases(self, owner: str, leases: list[tuple[str, int]], ttl: float) -> set[str]:
        """Extend the given (session id, token) leases of ``owner`` in one statement;
        return the session ids renewed (the others were lost)."""
        if not leases:
            return set()
        rows = await self._fetch(
            """
            UPDATE session_leases AS l SET expires_at = now() + make_interval(secs => $4)
            FROM unnest($2::uuid[], $3::bigint[]) AS h(session_id, token)
            WHERE l.session_id = h.session_id AND l.owner = $1 AND l.token = h.token
            RETURNING l.session_id
            """,
            owner,
            [require_id(sid, "session_id") for sid, _ in leases],
            [token for _, token in leases],
            float(ttl),
        )
        return {str(row[0]) for row in rows}

    async def release_lease(self, session_id: str, owner: str, token: int) -> None:
        """Give the lease up (nothing happens if another holder has it now)."""
        await self._execute(
            "DELETE FROM session_leases WHERE session_id = $1 AND owner = $2 AND token = $3",
            require_id(session_id, "session_id"),
            owner,
            token,
            idempotent=True,
        )

    async def lease_owner(self, session_id: str) -> str | None:
        """The replica holding the session's unexpired lease, or None."""
        row = await self._fetchrow(
            "SELECT owner FROM session_leases WHERE session_id = $1 AND expires_at >= now()",
            require_id(session_id, "session_id"),
        )
        return None if row is None else str(row[0])

    async def unleased_sessions(self, statuses: list[str]) -> list[str]:
        """Ids of sessions in these statuses that no unexpired lease covers: their
        runner died (or never took the lease)."""
        rows = await self._fetch(
            """
            SELECT s.id FROM sessions s
            LEFT JOIN session_leases l ON l.session_id = s.id AND l.expires_at >= now()
            WHERE s.status = ANY($1::text[]) AND l.session_id IS NULL
            """,
            statuses,
        )
        return [str(row[0]) for row in rows]

    async def last_event_seq(self, session_id: str) -> int:
        """The highest stored seq of the session (0 without events)."""
        row = await self._fetchrow(
            "SELECT coalesce(max(seq), 0) FROM events WHERE session_id = $1",
            require_id(session_id, "session_id"),
        )
        return int(row[0]) if row is not None else 0
