"""``SessionOwnership``: replicas mode, which replica works on a session now.

A replica changes a session only while it holds the session's lease
(``backend/sessions/lease.py``): taken for a command and freed after it, or
kept by a turn or set-up for as long as it runs. A command for a session that
another live replica holds is forwarded to that replica (interrupt, terminate)
or answered ``SESSION_BUSY``. When the lease is lost (this replica stalled past
its time to live), the actor stops writing: another replica may own it now.

A part of ``SessionActor``, called from its methods in its mailbox order.
Without a cluster (one process) every method is a no-op and the actor always
owns its sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from backend.errors import SessionBusy

if TYPE_CHECKING:
    from backend.sessions.actor import SessionActor
    from backend.sessions.cluster import Cluster
    from backend.sessions.lease import HeldLease

log = logging.getLogger("agent_tui.sessions")


class SessionOwnership:
    """The lease of one session, as this replica holds it (or not)."""

    def __init__(
        self, actor: SessionActor, cluster: Cluster | None, *, on_lost: Callable[[], None]
    ) -> None:
        self._actor = actor
        self._cluster = cluster
        self._on_lost = on_lost
        # The lease while this replica works on the session.
        self.lease: HeldLease | None = None
        # Set when the lease was lost or given up: write nothing more to the session.
        self.abandoned = False

    @property
    def held(self) -> bool:
        """This replica holds the lease now."""
        return self.lease is not None

    @property
    def lost(self) -> bool:
        """The session may belong to another replica now: stop writing to it."""
        return self.abandoned or (self.lease is not None and self.lease.lost)

    def adopt(self, lease: HeldLease) -> None:
        """Hold ``lease`` and keep it alive until it is released or lost."""
        self.lease = lease
        lease.keep(on_lost=self._lease_lost)

    def _lease_lost(self) -> None:
        # Another replica may own the session now: stop writing to it.
        self.abandoned = True
        self._on_lost()

    async def take(self, wait: float = 0.0) -> HeldLease | None:
        """Take the lease, then reload the record and take over the event numbering.
        None when another replica holds it (after ``wait`` s)."""
        assert self._cluster is not None
        if self.lease is not None:
            return None
        actor = self._actor
        deadline = time.monotonic() + wait
        while True:
            lease = await self._cluster.leases.acquire(actor.id)
            if lease is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if lease is None:
            return None
        try:
            await actor.refresh()
            await actor.events.sync(actor.record.last_seq)
        except BaseException:
            await lease.release()
            raise
        self.abandoned = False
        self.adopt(lease)
        return lease

    async def claim(self, wait: float = 0.0) -> None:
        """Hold the lease for a command, or answer ``SESSION_BUSY``."""
        if self._cluster is None:
            return
        if await self.take(wait) is None:
            actor = self._actor
            await actor.refresh()
            actor._check_not_busy()
            raise SessionBusy(
                "The session is busy on another replica",
                details={"sessionId": actor.id, "status": actor.record.status},
            )

    async def release(self) -> None:
        """Free the lease, if this replica holds it."""
        lease, self.lease = self.lease, None
        if lease is not None:
            await lease.release()

    @contextlib.asynccontextmanager
    async def held_for_command(self) -> AsyncIterator[None]:
        """Hold the lease for a command, unless this replica's own turn holds it
        already (the mailbox then orders the command)."""
        if self._cluster is None or self.lease is not None:
            yield
            return
        await self.claim()
        try:
            yield
        finally:
            await self.release()

    async def forward(self, command: str) -> dict[str, Any] | None:
        """Run ``command`` on the replica holding the lease, if another one does;
        its answer, or None (no other holder, or it is dead)."""
        if self._cluster is None:
            return None
        session_id = self._actor.id
        owner = await self._cluster.leases.owner_of(session_id)
        if owner is None or owner == self._cluster.replica_id:
            return None
        try:
            return await self._cluster.send_command(owner, command, session_id)
        except TimeoutError:
            log.warning("replica %s did not answer %s for %s", owner, command, session_id)
            return None
