"""``SessionRegistry``: finds or rebuilds the one actor of each session.

Actors are created on demand (a new session, or the first use of a stored one
after a restart) and dropped from memory when idle. A background loop pauses
sandboxes that have been idle too long and sweeps sandboxes that belong to no
live session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from backend import events as ev
from backend.errors import SessionBusy, SessionLimitExceeded, SessionNotFound
from backend.records import (
    ERROR,
    IDLE,
    PAUSED,
    RUNNING,
    STARTING,
    TERMINATED,
    SessionRecord,
    UsageRecord,
    new_id,
    utcnow,
)
from backend.schemas import SessionCreate
from backend.sessions.actor import ActorDeps, SessionActor

log = logging.getLogger("agent_tui.sessions")

# After a crash mid-turn, partial events numbered after the last stored one may
# have reached clients; continue numbering past any of them.
SEQ_GAP_AFTER_CRASH = 100_000


class SessionRegistry:
    """The map from session id to its live actor."""

    def __init__(self, deps: ActorDeps) -> None:
        self._deps = deps
        self._store = deps.store
        self._settings = deps.settings
        self._actors: dict[str, SessionActor] = {}
        self._loading: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._creating: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._housekeeping: asyncio.Task[None] | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._last_sweep = time.monotonic()
        self._cluster = deps.cluster

    @property
    def loaded(self) -> int:
        return len(self._actors)

    async def start(self) -> None:
        """Load sessions whose sandbox may still run (so the idle pause covers them
        after a restart) and start the housekeeping loop. In replicas mode, start
        answering forwarded commands and reaping sessions of dead replicas instead."""
        if self._cluster is not None:
            await self._cluster.start(self._command)
            self._reaper = asyncio.create_task(self._reap(), name="session-reaper")
            self._housekeeping = asyncio.create_task(self._housekeep(), name="session-housekeeping")
            return
        for record in await self._store.list_sessions_by_status([STARTING, IDLE, RUNNING]):
            if record.id not in self._actors:
                try:
                    self._actors[record.id] = await self._rebuild(record)
                except Exception:
                    log.exception("could not reload session %s", record.id)
        self._housekeeping = asyncio.create_task(self._housekeep(), name="session-housekeeping")

    async def close(self) -> None:
        """Stop housekeeping and drop every actor (sandboxes keep running).

        Replicas mode drains first: no new turn starts here, running turns get
        ``drain_seconds`` to end, and those that do not are abandoned (their lease
        freed), so another replica ends them as lost at once."""
        for task in (self._housekeeping, self._reaper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._cluster is not None:
            await self._drain()
        actors, self._actors = list(self._actors.values()), {}
        await asyncio.gather(*(a.close() for a in actors), return_exceptions=True)

    async def _drain(self) -> None:
        self._deps.draining = True
        tasks = [t for a in self._actors.values() for t in a.local_tasks()]
        if tasks:
            await asyncio.wait(tasks, timeout=self._settings.drain_seconds)
        busy = [a for a in self._actors.values() if a.busy_here]
        if busy:
            log.warning("drain: %d turn(s) still running; handing them over", len(busy))
        await asyncio.gather(*(a.abandon() for a in busy), return_exceptions=True)

    def end_streams(self) -> None:
        """End every open event stream cleanly; clients reconnect with Last-Event-ID."""
        for actor in self._actors.values():
            actor.events.end_streams()

    async def create(
        self, *, user_id: str, api_key_id: str | None, body: SessionCreate
    ) -> SessionActor:
        """Create a session (status ``starting``) and start its sandbox in the background."""
        session_id = new_id()
        lease = None
        if self._cluster is not None:
            await self._cluster.ping()  # 503 now rather than a session that cannot start
            # Taken before the row exists, so the reaper never sees it unleased.
            lease = await self._cluster.leases.acquire(session_id)
            if lease is None:
                raise SessionBusy(details={"sessionId": session_id})
        try:
            actor = await self._create(session_id, user_id, api_key_id, body)
        except BaseException:
            if lease is not None:
                await lease.release()
            raise
        if lease is not None:
            actor.adopt_lease(lease)
        try:
            await actor.events.publish(ev.SESSION_CREATED, {"sessionId": actor.id})
        except BaseException:
            # Replicas mode, Redis lost meanwhile: free the lease; the reaper then
            # ends the session (status error) like one whose server died.
            if self._cluster is not None:
                await actor.abandon()
            raise
        actor.start_setup(repo=body.repo, git_token=body.git_token)
        return actor

    async def _create(
        self, session_id: str, user_id: str, api_key_id: str | None, body: SessionCreate
    ) -> SessionActor:
        settings = self._settings
        async with self._creating[user_id]:
            active = await self._store.count_active_sessions(user_id)
            if active >= settings.max_active_sessions:
                raise SessionLimitExceeded(
                    f"At most {settings.max_active_sessions} active sessions; pause or delete one first",
                    details={"limit": settings.max_active_sessions, "active": active},
                )
            now = utcnow()
            record = SessionRecord(
                id=session_id,
                user_id=user_id,
                api_key_id=api_key_id,
                status=STARTING,
                model=body.model or settings.anthropic_model,
                created_at=now,
                last_activity_at=now,
                title=body.title,
                repo=body.repo,
                system_prompt=body.system_prompt,
                sandbox_provider=self._deps.provider.name,
                sandbox_state="starting",
                engine=body.engine or settings.agent_engine,
            )
            await self._store.create_session(record)
        actor = SessionActor(record, self._deps)
        self._actors[record.id] = actor
        await self._store.add_usage(
            [UsageRecord(new_id(), user_id, "session.created", 1, now, record.id)]
        )
        return actor

    async def get(self, session_id: str, user_id: str) -> SessionActor:
        """The session's actor, loading it from the store on first use.

        Another user's session answers ``SessionNotFound``, exactly like a missing one.
        """
        actor = await self._load(session_id)
        if actor.record.user_id != user_id:
            raise SessionNotFound(details={"sessionId": session_id})
        actor.last_used = time.monotonic()
        return actor

    async def _load(self, session_id: str) -> SessionActor:
        actor = self._actors.get(session_id)
        if actor is not None:
            # Replicas mode: another replica may have changed it since.
            await actor.refresh()
            return actor
        async with self._loading[session_id]:
            actor = self._actors.get(session_id)
            if actor is None:
                record = await self._store.get_session(session_id)
                if record is None:
                    raise SessionNotFound(details={"sessionId": session_id})
                actor = await self._rebuild(record)
                self._actors[session_id] = actor
        self._loading.pop(session_id, None)
        return actor

    def loaded_actor(self, session_id: str) -> SessionActor | None:
        """The actor if it is in memory and its state is current (no store access):
        in replicas mode, only while this replica holds the session's lease."""
        actor = self._actors.get(session_id)
        if actor is not None and self._cluster is not None and not actor.holds_lease:
            return None
        return actor

    async def _command(self, command: str, session_id: str) -> dict[str, object]:
        """A command forwarded by another replica to this one (the lease holder)."""
        actor = await self._load(session_id)
        if command == "interrupt":
            return {"interrupted": await actor.interrupt()}
        if command == "terminate":
            await actor.terminate()
            return {"status": actor.record.status}
        return {"error": f"unknown command {command}"}

    async def _reap(self) -> None:
        """Replicas mode: end the turns of replicas that died (their lease expired)."""
        from backend.sessions.cluster import REAP_INTERVAL

        assert self._cluster is not None
        store = self._cluster.leases.store
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            try:
                for session_id in await store.unleased_sessions([RUNNING, STARTING]):
                    actor = await self._load(session_id)
                    if await actor.recover():
                        log.info("took over session %s from a replica that stopped", session_id)
            except Exception as exc:
                log.warning("reaper: %s: %s", type(exc).__name__, exc)

    async def _rebuild(self, record: SessionRecord) -> SessionActor:
        """An actor for a stored session, after a restart or an eviction."""
        if self._cluster is not None:
            # Numbering is taken over under the lease; a dead runner is the reaper's.
            return SessionActor(record, self._deps)
        later = await self._store.list_events(record.id, after_seq=record.last_seq, limit=100_000)
        if later:
            record.last_seq = later[-1].seq
        crashed = record.status in (RUNNING, STARTING)
        if crashed:
            record.last_seq += SEQ_GAP_AFTER_CRASH
        actor = SessionActor(record, self._deps)
        if crashed:
            if record.status == RUNNING:
                await actor._set_status(IDLE, ev.SESSION_IDLE)
            else:
                await actor._fail(
                    "SANDBOX_ERROR", "The server stopped while the sandbox was being created"
                )
        return actor

    async def _housekeep(self) -> None:
        interval = min(30.0, max(0.5, self._settings.sandbox_idle_pause_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.housekeep_once()
            except Exception:
                log.exception("session housekeeping failed")

    async def housekeep_once(self) -> None:
        """Pause idle sandboxes, evict idle actors, sweep leaked sandboxes."""
        settings = self._settings
        if self._cluster is not None:
            await self._pause_idle_everywhere()
        for session_id, actor in list(self._actors.items()):
            status = actor.record.status
            if self._cluster is not None:
                if (
                    not actor.busy_here
                    and not actor.holds_lease
                    and actor.events.follower_count == 0
                    and actor.idle_for >= settings.actor_idle_evict_seconds
                ):
                    self._actors.pop(session_id, None)
                    await actor.close()
                continue
            if status == IDLE and actor.idle_for >= settings.sandbox_idle_pause_seconds:
                try:
                    await actor.pause(auto=True)
                except Exception as exc:
                    log.warning("idle pause of %s failed: %s", session_id, type(exc).__name__)
            # An actor holding a live sandbox stays, so the idle pause above can reach it.
            holds_sandbox = actor.record.sandbox_state in (
                "starting",
                "ready",
                "pausing",
                "resuming",
            )
            if (
                not actor.busy
                and not holds_sandbox
                and actor.events.follower_count == 0
                and actor.idle_for >= settings.actor_idle_evict_seconds
            ):
                self._actors.pop(session_id, None)
                await actor.close()
        if time.monotonic() - self._last_sweep >= self._deps.settings.modal_sweep_seconds:
            self._last_sweep = time.monotonic()
            await self.sweep()

    async def _pause_idle_everywhere(self) -> None:
        """Replicas mode: pause sessions idle too long, whichever replica used them
        (the pause takes the lease, so one replica does each)."""
        limit = self._settings.sandbox_idle_pause_seconds
        now = utcnow()
        for record in await self._store.list_sessions_by_status([IDLE]):
            if (
                record.status == TERMINATED
                or (now - record.last_activity_at).total_seconds() < limit
            ):
                continue
            if record.sandbox_state not in ("ready", "starting"):
                continue
            try:
                actor = await self._load(record.id)
                await actor.pause(auto=True)
            except SessionBusy:
                pass
            except Exception as exc:
                log.warning("idle pause of %s failed: %s", record.id, type(exc).__name__)

    async def sweep(self) -> int:
        """Terminate sandboxes that belong to no live session."""
        live = await self._store.list_sessions_by_status([STARTING, IDLE, RUNNING, PAUSED, ERROR])
        return await self._deps.provider.sweep({s.id for s in live})
