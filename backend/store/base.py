"""The ``Store`` interface: persistence at the level of the domain.

Two implementations: ``SqliteStore`` (embedded default) and ``PostgresStore``
(asyncpg). Both return the records of ``backend/records.py`` with normalised
types, and both raise ``backend.errors.StoreUnavailable`` when the database
cannot be reached (never a driver exception).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from backend.records import (
    ApiKey,
    EventRecord,
    MessageRecord,
    PermissionRequest,
    ProxyToken,
    SessionRecord,
    UsageRecord,
)


@dataclass(frozen=True)
class SessionCursor:
    """Position in a newest-first session listing: continue strictly after it."""

    created_at: datetime
    id: str


@dataclass
class UsageSummary:
    """Usage summed by event type and by (day, event type)."""

    by_type: dict[str, float]
    by_day: list[
        dict[str, Any]
    ]  # [{"date": "2026-11-25", "eventType": "tokens.input", "quantity": 12.0}]


@runtime_checkable
class Store(Protocol):
    """Domain-level persistence. Every method may raise ``StoreUnavailable``."""

    # lifecycle
    async def migrate(self) -> list[str]:
        """Apply pending migrations under a lock; return the versions applied."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers a trivial query."""
        ...

    async def close(self) -> None: ...

    # API keys
    async def create_key(self, key: ApiKey) -> None: ...

    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None: ...

    async def get_key(self, key_id: str) -> ApiKey | None: ...

    async def list_keys(self, user_id: str) -> list[ApiKey]:
        """All keys of the user, revoked ones included, newest first."""
        ...

    async def revoke_key(self, key_id: str, at: datetime) -> None:
        """Set ``revoked_at`` unless already set (idempotent)."""
        ...

    async def touch_key(self, key_id: str, at: datetime) -> None:
        """Set ``last_used_at``."""
        ...

    # sessions
    async def create_session(self, session: SessionRecord) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None: ...

    async def list_sessions(
        self,
        user_id: str,
        *,
        status: str | None = None,
        limit: int = 50,
        after: SessionCursor | None = None,
    ) -> list[SessionRecord]:
        """The user's sessions, newest first (created_at desc, id desc)."""
        ...

    async def list_sessions_by_status(self, statuses: list[str]) -> list[SessionRecord]:
        """All sessions (of every user) in these statuses; for sweeps and restarts."""
        ...

    async def count_active_sessions(self, user_id: str) -> int:
        """Sessions of the user whose status is in ``records.ACTIVE_STATUSES``."""
        ...

    async def update_session(self, session_id: str, changes: dict[str, Any]) -> None:
        """Change the given fields (names from ``records.SESSION_MUTABLE_FIELDS``)."""
        ...

    # messages
    async def add_message(self, message: MessageRecord) -> None: ...

    async def update_message(self, message_id: str, changes: dict[str, Any]) -> None:
        """Change the given fields (names from ``records.MESSAGE_MUTABLE_FIELDS``)."""
        ...

    async def list_messages(
        self, session_id: str, *, limit: int | None = None, before: str | None = None
    ) -> list[MessageRecord]:
        """Messages oldest first. With ``limit``, the newest ``limit`` ones (still
        oldest first); with ``before`` (a message id), only those created before it."""
        ...

    # events
    async def append_events(self, events: list[EventRecord]) -> None: ...

    async def list_events(
        self, session_id: str, *, after_seq: int, limit: int = 1000
    ) -> list[EventRecord]:
        """Stored events with seq > ``after_seq``, in seq order."""
        ...

    # usage
    async def add_permission_request(self, request: PermissionRequest) -> None: ...

    async def get_permission_request(self, request_id: str) -> PermissionRequest | None: ...

    async def list_permission_requests(
        self, session_id: str, *, pending_only: bool = False
    ) -> list[PermissionRequest]: ...

    async def decide_permission_request(
        self, request_id: str, decision: str, at: datetime
    ) -> PermissionRequest | None:
        """Set the decision of a pending request (the first answer wins); the request
        as stored afterwards."""
        ...

    async def pending_permission_counts(self, user_id: str) -> dict[str, int]: ...

    # model-proxy tokens (only their SHA-256 digests)
    async def add_proxy_token(self, token: ProxyToken) -> None: ...

    async def live_proxy_token(self, token_hash: str) -> ProxyToken | None:
        """The token with this digest unless it is revoked or its session terminated."""
        ...

    async def revoke_proxy_token(self, token_hash: str, at: datetime) -> None:
        """Set ``revoked_at`` unless already set (idempotent)."""
        ...

    async def revoke_session_proxy_tokens(self, session_id: str, at: datetime) -> None:
        """Revoke every live token of the session (idempotent)."""
        ...

    async def add_usage(self, records: list[UsageRecord]) -> None: ...

    async def usage_summary(
        self,
        user_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        session_id: str | None = None,
    ) -> UsageSummary: ...
