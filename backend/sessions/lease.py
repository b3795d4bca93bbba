"""Session leases: which replica may change a session, held with heartbeats.

Replicas mode only. The pattern is the one of LangGraph Platform's run queue and
of most job queues on PostgreSQL: a row per leased thing with an owner and an
expiry, taken atomically (``INSERT … ON CONFLICT … DO UPDATE … WHERE expired``),
renewed by its holder every third of its time to live, and deleted at the end.
A holder that dies stops renewing; once the row expires any replica may take it
(the reaper in ``backend/sessions/registry.py`` does, to end the lost turn).
Expiry is judged by the database's clock, the one clock all replicas share, and
each new holder gets a higher ``token``, so an old holder can neither renew nor
release its successor's lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from backend.errors import StoreUnavailable

log = logging.getLogger("agent_tui.sessions")


class LeaseStore(Protocol):
    """What leases need from the store (``PostgresStore`` has it)."""

    async def acquire_lease(self, session_id: str, owner: str, ttl: float) -> int | None: ...

    async def renew_leases(
        self, owner: str, leases: list[tuple[str, int]], ttl: float
    ) -> set[str]: ...

    async def release_lease(self, session_id: str, owner: str, token: int) -> None: ...

    async def lease_owner(self, session_id: str) -> str | None: ...

    async def unleased_sessions(self, statuses: list[str]) -> list[str]: ...


class HeldLease:
    """A lease this replica holds; ``keep()`` has the replica's heartbeat renew it."""

    def __init__(self, leases: Leases, session_id: str, token: int) -> None:
        self._leases = leases
        self.session_id = session_id
        self.token = token
        self.lost = False
        self._on_lost: Callable[[], None] | None = None

    def keep(self, on_lost: Callable[[], None] | None = None) -> None:
        """Renew it with the replica's heartbeat until released. If a renewal finds
        it gone (or the database unreachable past the expiry), ``lost`` becomes
        True and ``on_lost`` runs: the work must stop."""
        self._on_lost = on_lost
        self._leases._keep(self)

    def _lose(self) -> None:
        self.lost = True
        log.warning("lease of session %s lost: another replica may take it", self.session_id)
        if self._on_lost is not None:
            self._on_lost()

    async def release(self) -> None:
        """Stop renewing and give the lease up (best effort: it expires anyway)."""
        self._leases._drop(self)
        if not self.lost:
            try:
                await self._leases.store.release_lease(
                    self.session_id, self._leases.owner, self.token
                )
            except StoreUnavailable:
                log.warning("could not release the lease of %s; it will expire", self.session_id)


class Leases:
    """This replica's view of the lease table, and the heartbeat of the leases it
    holds: one ``UPDATE`` renews all of them every third of their time to live, so
    a busy replica's renewals never queue behind its other database work."""

    def __init__(self, store: LeaseStore, owner: str, ttl: float) -> None:
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self._held: dict[str, HeldLease] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    async def acquire(self, session_id: str) -> HeldLease | None:
        """The session's lease if it is free (or expired), else None."""
        token = await self.store.acquire_lease(session_id, self.owner, self.ttl)
        return None if token is None else HeldLease(self, session_id, token)

    async def owner_of(self, session_id: str) -> str | None:
        """The replica holding the session's live lease, or None."""
        return await self.store.lease_owner(session_id)

    async def close(self) -> None:
        """Stop the heartbeat (the leases still held expire by themselves)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None

    def _keep(self, lease: HeldLease) -> None:
        self._held[lease.session_id] = lease
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew(), name="lease-heartbeat")

    def _drop(self, lease: HeldLease) -> None:
        if self._held.get(lease.session_id) is lease:
            del self._held[lease.session_id]

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        renewed_at = loop.time()
        while True:
            await asyncio.sleep(self.ttl / 3)
            held = list(self._held.values())
            if not held:
                renewed_at = loop.time()
                continue
            asked_at = loop.time()
            try:
                alive = await self.store.renew_leases(
                    self.owner, [(h.session_id, h.token) for h in held], self.ttl
                )
            except StoreUnavailable:
                if loop.time() - renewed_at < self.ttl:
                    continue  # they may still be ours: try again next beat
                alive = set()
            except Exception:
                log.exception("lease heartbeat failed")
                continue
            else:
                renewed_at = asked_at
            for lease in held:
                if lease.session_id not in alive and self._held.get(lease.session_id) is lease:
                    self._drop(lease)
                    lease._lose()
