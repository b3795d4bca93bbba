"""``SessionActor``: the one owner of a session's state, sandbox and event stream.

Every command (send a message, interrupt, pause, resume, rename, terminate) is
a method here, serialised by the actor's mailbox lock, so two turns never race
and the stored state has a single writer. A turn runs as a task of its own so
that ``interrupt`` can reach it while it runs.

The actor decides what happens and when; its parts, each in its own module and
called only from the actor's methods, do the work:

- ``session_sandbox.SessionSandbox``: the sandbox's handle and running time;
  create, reattach, resume, pause, terminate; the engine living in it;
- ``turns.SessionTurns``: a turn from the user's message to its end; resuming
  a cut turn, ending a lost one, compacting the context;
- ``turn_observer.TurnObserver``: the engine's callbacks during a turn, as events;
- ``ownership.SessionOwnership``: replicas mode, the session's lease and the
  commands forwarded to the replica holding it;
- ``permissions.PermissionGate``: the requests a turn waits on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend import events as ev
from backend.errors import (
    ApiError,
    ServiceUnavailable,
    SessionBusy,
    SessionFailed,
    SessionTerminated,
)
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
from backend.sessions.eventlog import EventLog
from backend.sessions.ownership import SessionOwnership
from backend.sessions.permissions import PermissionGate, request_json
from backend.sessions.session_sandbox import SessionSandbox, sandbox_message
from backend.sessions.turns import SessionTurns
from backend.settings import Settings
from backend.store.base import Store
from sandbox.base import (
    FileEntry,
    Sandbox,
    SandboxProvider,
    check_not_reserved,
    visible_entries,
)

if TYPE_CHECKING:
    from backend.sessions.cluster import Cluster
    from backend.sessions.lease import HeldLease


@dataclass
class ActorDeps:
    """What every actor needs; built once by the registry."""

    settings: Settings
    store: Store
    provider: SandboxProvider
    agent: Any  # backend.agent.loop.AgentLoop (imported lazily: it pulls in the SDK)
    # Replicas mode (REDIS_URL): leases, shared event streams, forwarded commands.
    cluster: Cluster | None = None
    # Set when the server shuts down: no new turns here (clients retry elsewhere).
    draining: bool = False
    # Engines besides the built-in loop, by name ("opencode": OpenCodeEngine).
    engines: dict[str, Any] = field(default_factory=dict)
    # Gives the built-in engine's sandbox commands the model proxy (SandboxModelAccess).
    model_access: Any = None

    def engine_for(self, name: str) -> Any:
        """The engine that runs a session's turns (the built-in loop by default)."""
        return self.engines.get(name, self.agent)


class SessionActor:
    """Owns one session. The registry creates it (``SessionRegistry``)."""

    def __init__(self, record: SessionRecord, deps: ActorDeps) -> None:
        self.record = record
        self._deps = deps
        self._store = deps.store
        self._provider = deps.provider
        self._settings = deps.settings
        self._cluster = deps.cluster
        self.events: EventLog
        if deps.cluster is not None:
            from backend.sessions.redis_events import RedisEventLog

            self.events = RedisEventLog(
                record.id,
                store=deps.store,
                cluster=deps.cluster,
                last_seq=record.last_seq,
                buffer_size=deps.settings.event_buffer_size,
                follower_queue_size=deps.settings.follower_queue_size,
            )
        else:
            self.events = EventLog(
                record.id,
                store=deps.store,
                last_seq=record.last_seq,
                buffer_size=deps.settings.event_buffer_size,
                follower_queue_size=deps.settings.follower_queue_size,
            )
        # Replicas mode: the lease while this replica works on the session.
        self._owner = SessionOwnership(self, deps.cluster, on_lost=self._lease_lost)
        self._mailbox = asyncio.Lock()
        # The sandbox (handle, running time, life cycle) and the turns' work.
        self._box = SessionSandbox(self)
        self._turns = SessionTurns(self)
        self._turn: asyncio.Task[None] | None = None
        self._setup: asyncio.Task[None] | None = None
        self._logs: collections.deque[str] = collections.deque(maxlen=500)
        self.last_used = time.monotonic()
        self.permissions = PermissionGate(
            record.id,
            store=deps.store,
            emit=self._emit,
            options=lambda: self.record.options,
            allow_always=self._allow_tool,
            poll_seconds=deps.settings.permission_poll_seconds,
        )

    # ------------------------------------------------------------------ helpers

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def busy(self) -> bool:
        """A turn or the sandbox setup is running."""
        return self.record.status in (STARTING, RUNNING)

    def _log(self, line: str) -> None:
        self._logs.append(f"{utcnow().isoformat(timespec='seconds')} {line}")

    async def _save(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.record, name, value)
        changes["last_seq"] = self.record.last_seq = self.events.last_seq
        await self._store.update_session(self.id, changes)

    async def _emit(self, type_: str, data: dict[str, Any] | None = None) -> ev.Event:
        if self._owner.abandoned:
            raise SessionBusy("The session moved to another server", details={"sessionId": self.id})
        self.last_used = time.monotonic()
        event = await self.events.publish(
            type_, data if data is not None else {"sessionId": self.id}
        )
        # In memory at once (clients read it as lastEventId); stored with the next save.
        self.record.last_seq = event.seq
        return event

    def view(self) -> SessionRecord:
        """The session as clients should see it now: the running sandbox's time included."""
        if not self._box.counting:
            return self.record
        running = self._box.running_seconds
        return dataclasses.replace(
            self.record, sandbox_seconds=self.record.sandbox_seconds + running
        )

    async def _set_status(self, status: str, event_type: str | None, **changes: Any) -> None:
        await self._save(status=status, last_activity_at=utcnow(), **changes)
        if event_type:
            await self._emit(event_type)

    def _check_usable(self) -> None:
        """Refuse work on a deleted or failed session (history stays readable)."""
        if self.record.status == TERMINATED:
            raise SessionTerminated(details={"sessionId": self.id})
        if self.record.status == ERROR:
            error = self.record.error or {"code": "SANDBOX_ERROR", "message": "The session failed"}
            raise SessionFailed(
                f"{error['message']}. The session cannot run anything more; start a new one.",
                details={"sessionId": self.id, "status": ERROR, "error": error},
            )

    def _check_not_busy(self) -> None:
        self._check_usable()
        if self.busy:
            raise SessionBusy(
                "The session is busy"
                if self.record.status == RUNNING
                else "The session is still starting",
                details={"sessionId": self.id, "status": self.record.status},
            )

    async def _usage(self, event_type: str, quantity: float) -> None:
        await self._store.add_usage(
            [UsageRecord(new_id(), self.record.user_id, event_type, quantity, utcnow(), self.id)]
        )

    async def _fail(self, code: str, message: str) -> None:
        self._log(f"session error {code}: {message}")
        await self._save(
            status=ERROR, sandbox_state="error", error={"code": code, "message": message}
        )
        await self._emit(ev.SESSION_ERROR, {"code": code, "message": message})

    @property
    def _engine(self) -> Any:
        """The engine that runs this session's turns."""
        return self._deps.engine_for(self.record.engine)

    # ------------------------------------------------------------------ replicas mode

    @property
    def holds_lease(self) -> bool:
        """This replica works on the session now (replicas mode)."""
        return self._owner.held

    async def refresh(self) -> None:
        """Replicas mode: reload the record, which other replicas may have changed.
        A no-op while this replica holds the lease (its record is the truth)."""
        if self._cluster is None or self._owner.held:
            return
        record = await self._store.get_session(self.id)
        if record is None:
            return
        self.record = record
        self.events.last_seq = max(self.events.last_seq, record.last_seq)
        sandbox = self._box.current
        if sandbox is not None and (
            record.sandbox_id != sandbox.id or record.sandbox_state != "ready"
        ):
            # Paused, resumed or deleted elsewhere: this handle is stale.
            self._box.forget()

    def adopt_lease(self, lease: HeldLease) -> None:
        """Hold ``lease`` (taken by the registry before creating the session)."""
        self._owner.adopt(lease)

    def _lease_lost(self) -> None:
        # Another replica may own the session now (the owner stopped our writes): stop.
        for task in (self._turn, self._setup):
            if task is not None and not task.done():
                task.cancel()

    async def recover(self) -> bool:
        """Replicas mode: end what a dead replica left running on this session (its
        lease expired): a turn ends with ``message.complete`` (stopReason ``lost``)
        and ``session.idle``; a sandbox being created, with ``session.error``.
        Return whether this replica did it."""
        async with self._mailbox:
            if self._cluster is None or self._turn is not None or self._setup_running:
                return False
            if await self._owner.take() is None:
                return False
            try:
                if self.record.status == RUNNING:
                    await self._turns.end_lost()
                elif self.record.status == STARTING:
                    await self._fail(
                        "SANDBOX_ERROR",
                        "The server creating the sandbox stopped; start a new session",
                    )
                else:
                    return False
            finally:
                await self._owner.release()
            return True

    async def abandon(self) -> None:
        """Shutdown after the drain bound: stop this replica's work on the session
        without a word, then free the lease, so another replica ends it as lost."""
        self._owner.abandoned = True
        await self.close()
        await self._owner.release()

    def local_tasks(self) -> list[asyncio.Task[None]]:
        """The turn and set-up running in this process."""
        return [t for t in (self._turn, self._setup) if t is not None and not t.done()]

    @property
    def busy_here(self) -> bool:
        """A turn or a sandbox set-up runs in this process."""
        return (self._turn is not None and not self._turn.done()) or self._setup_running

    @property
    def _setup_running(self) -> bool:
        return self._setup is not None and not self._setup.done()

    # ------------------------------------------------------------------ set-up

    def start_setup(self, *, repo: str | None, git_token: str | None) -> None:
        """Create the sandbox in the background (status ``starting`` until then)."""
        self._setup = asyncio.create_task(self._run_setup(repo, git_token), name=f"setup-{self.id}")

    async def _run_setup(self, repo: str | None, git_token: str | None) -> None:
        try:
            await self._box.set_up(repo, git_token)
        finally:
            git_token = None
            await self._owner.release()

    async def wait_setup(self) -> None:
        """Wait for the background set-up (tests, and the create-with-progress stream)."""
        if self._setup is not None:
            await asyncio.shield(self._setup)

    # ------------------------------------------------------------------ turns

    async def send_message(self, content: str) -> tuple[str, ev.Event]:
        """Start a turn; return the assistant message id and the ``session.running``
        event (followers subscribed before the call see every event of the turn)."""
        async with self._mailbox:
            if self._deps.draining:
                raise ServiceUnavailable(
                    "This server is shutting down; retry (another replica takes the turn)",
                    retry_after=1,
                )
            self._check_not_busy()
            await self._owner.claim()
            try:
                return await self._start_turn(content)
            except BaseException:
                if self._turn is None:
                    await self._owner.release()
                raise

    async def _start_turn(self, content: str) -> tuple[str, ev.Event]:
        self._check_not_busy()
        was_paused = self.record.status == PAUSED
        running = await self._emit(ev.SESSION_RUNNING)
        await self._save(status=RUNNING, last_activity_at=utcnow(), error=None)
        try:
            await self._box.prepare_engine(await self._box.ensure())
        except ApiError as exc:
            await self._emit(ev.ERROR, exc.body()["error"])
            if self.record.status == RUNNING:
                await self._set_status(PAUSED if was_paused else IDLE, ev.SESSION_IDLE)
            elif self.record.status == ERROR:
                await self._emit(ev.SESSION_IDLE)
            raise
        if was_paused:
            await self._emit(ev.SESSION_RESUMED)
        message_id = new_id()
        self._start_turn_task(lambda: self._turns.run(content, message_id))
        return message_id, running

    def _start_turn_task(self, turn: Callable[[], Awaitable[None]]) -> None:
        """Run ``turn`` as the session's turn task; it frees the lease when it ends."""

        async def run() -> None:
            try:
                await turn()
            finally:
                self._turn = None
                with contextlib.suppress(Exception):
                    await self._owner.release()

        self._turn = asyncio.create_task(run(), name=f"turn-{self.id}")

    async def interrupt(self) -> bool:
        """Stop the running turn, if any; return whether one was running."""
        turn = self._turn
        if turn is None or turn.done():
            return await self._owner.forward("interrupt") == {"interrupted": True}
        self.permissions.interrupting = True  # a request the turn waits on is denied
        turn.cancel()
        # The agent loop turns the cancellation into stop_reason "interrupted" and the
        # turn task ends normally after message.complete and session.idle.
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(turn)
        finally:
            self.permissions.interrupting = False
        return True

    # ------------------------------------------------------------------ lifecycle

    async def pause(self, *, auto: bool = False) -> None:
        """Snapshot the sandbox and stop it (status ``paused``)."""
        async with self._mailbox:
            self._check_not_busy()
            await self._owner.claim()
            try:
                await self._pause(auto)
            finally:
                await self._owner.release()

    async def _pause(self, auto: bool) -> None:
        self._check_not_busy()
        if self.record.status == PAUSED:
            return
        if auto and self._cluster is not None:
            idle = (utcnow() - self.record.last_activity_at).total_seconds()
            if idle < self._settings.sandbox_idle_pause_seconds:
                return  # used on another replica meanwhile
        snapshot_id = await self._box.pause()
        await self._set_status(
            PAUSED, ev.SESSION_PAUSED, sandbox_state="paused", snapshot_id=snapshot_id
        )
        self._log(f"paused{' (idle)' if auto else ''}: snapshot {snapshot_id}")

    async def resume(self) -> None:
        """Start the sandbox from its snapshot (status ``idle``)."""
        async with self._mailbox:
            self._check_not_busy()
            if self.record.status != PAUSED and self._cluster is None:
                return
            await self._owner.claim()
            try:
                self._check_not_busy()
                if self.record.status != PAUSED:
                    return
                sandbox = await self._box.ensure()
                await self._set_status(IDLE, ev.SESSION_RESUMED)
                try:
                    await self._box.prepare_engine(sandbox)
                except ApiError as exc:
                    # The sandbox runs; the next message tries the engine again.
                    self._log(f"engine {self.record.engine} did not start: {exc.message}")
            finally:
                await self._owner.release()

    async def rename(self, title: str) -> None:
        async with self._mailbox:
            if self._cluster is not None and not self._owner.held:
                # Only the title: the rest of the record belongs to the lease holder.
                await self._store.update_session(self.id, {"title": title})
                self.record.title = title
                return
            await self._save(title=title)

    async def update(
        self,
        *,
        title: str | None = None,
        model: str | None = None,
        thinking: bool | None = None,
        permission_mode: str | None = None,
    ) -> None:
        """Change the title, the model or the agent options. A running turn keeps its
        model; thinking and the permission mode apply from its next model or tool call.
        In replicas mode, a turn running on another replica makes this SESSION_BUSY."""
        async with self._mailbox, self._owner.held_for_command():
            changes: dict[str, Any] = {}
            if title is not None:
                changes["title"] = title
            if model is not None and model != self.record.model:
                changes["model"] = model
            options = dict(self.record.options)
            if thinking is not None:
                options["thinking"] = thinking
            if permission_mode is not None:
                options["permissionMode"] = permission_mode
            if options != self.record.options:
                changes["options"] = options
            if not changes:
                return
            await self._save(**changes)
            if changes.keys() - {"title"}:
                await self._emit(ev.SESSION_UPDATED, self.agent_settings())

    async def compact(self) -> dict[str, Any] | None:
        """Compact the model's context now (between turns); the ``context.compacted``
        data, or None when there was too little to compact. The transcript stays."""
        async with self._mailbox:
            self._check_not_busy()
            async with self._owner.held_for_command():
                return await self._turns.compact()

    # ------------------------------------------------------------------ permissions

    async def _allow_tool(self, tool: str) -> None:
        """``always``: this tool runs without asking for the rest of the session."""
        options = dict(self.record.options)
        allowed = list(options.get("allowedTools", []))
        if tool not in allowed:
            options["allowedTools"] = [*allowed, tool]
            await self._save(options=options)

    async def pending_permissions(self) -> list[dict[str, Any]]:
        """The requests waiting for an answer, as the API shows them."""
        pending = await self._store.list_permission_requests(self.id, pending_only=True)
        return [request_json(r) for r in pending]

    async def answer_permission(self, request_id: str, decision: str) -> dict[str, Any]:
        """Answer a request (``allow``, ``deny`` or ``always``). The turn waiting for it
        goes on; a turn cut by a server restart while it waited is resumed."""
        request = await self.permissions.decide(request_id, decision)
        if not self.permissions.waiting_for(request_id) and self._turn is None:
            await self._resume_cut_turn(request.message_id, request.tool_use_id)
        return {**request_json(request), "decision": request.decision}

    async def _resume_cut_turn(self, message_id: str, tool_use_id: str) -> None:
        """Resume the turn whose last round was cut while ``tool_use_id`` waited."""
        async with self._mailbox:
            if self.busy or self.record.status in (TERMINATED, ERROR):
                return
            if self._cluster is not None:
                if await self._owner.take() is None:
                    return  # another replica works on the session
                if self.busy or self.record.status in (TERMINATED, ERROR):
                    await self._owner.release()
                    return
            try:
                await self._resume_cut_turn_held(message_id, tool_use_id)
            finally:
                if self._turn is None:
                    await self._owner.release()

    async def _resume_cut_turn_held(self, message_id: str, tool_use_id: str) -> None:
        cut = await self._turns.cut_turn(message_id, tool_use_id)
        if cut is None:
            return
        assistant, history = cut
        was_paused = self.record.status == PAUSED
        await self._emit(ev.SESSION_RUNNING)
        await self._save(status=RUNNING, last_activity_at=utcnow(), error=None)
        try:
            await self._box.ensure()
        except ApiError as exc:
            await self._emit(ev.ERROR, exc.body()["error"])
            if self.record.status == RUNNING:
                await self._set_status(PAUSED if was_paused else IDLE, ev.SESSION_IDLE)
            return
        self._start_turn_task(lambda: self._turns.resume(assistant, history))
        self._log(f"turn {assistant.id} resumed after its permission answer")

    def agent_settings(self) -> dict[str, Any]:
        """The session's model and agent options, as ``session.updated`` carries them."""
        return {
            "model": self.record.model,
            "thinking": bool(self.record.options.get("thinking", False)),
            "permissionMode": self.record.options.get("permissionMode", "auto"),
        }

    async def terminate(self) -> None:
        """Stop everything and drop the sandbox; history stays readable. Idempotent."""
        if self._turn is None and not self._setup_running:
            if await self._owner.forward("terminate") is not None:
                await self.refresh()
                if self.record.status == TERMINATED:
                    return
        await self.interrupt()
        if self._setup is not None and not self._setup.done():
            self._setup.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._setup
        async with self._mailbox:
            await self.refresh()
            if self.record.status == TERMINATED:
                return
            # A dead holder's lease expires within its TTL: wait that long for it.
            await self._owner.claim(wait=15.0 if self._cluster is not None else 0.0)
            await self._box.release_engine(forget=True)
            try:
                await self._terminate()
            finally:
                await self._owner.release()

    async def _terminate(self) -> None:
        if self.record.status == TERMINATED:
            return
        await self._box.terminate()
        await self._set_status(TERMINATED, ev.SESSION_TERMINATED, sandbox_state="terminated")

    async def close(self) -> None:
        """Drop from memory (server shutdown, idle eviction): the sandbox keeps running."""
        for task in (self._turn, self._setup):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # ------------------------------------------------------------------ files and logs

    async def list_files(self, path: str) -> list[FileEntry]:
        """The files API's listing: ``.agent-tui/`` is neither listed nor listable."""
        check_not_reserved(path)
        sandbox = await self._sandbox_for_files()
        return visible_entries(await sandbox.list_dir(path))

    async def read_file(self, path: str) -> bytes:
        """The files API's read; a path under ``.agent-tui/`` answers ``ReservedPath``."""
        check_not_reserved(path)
        sandbox = await self._sandbox_for_files()
        return await sandbox.read_file(path)

    async def _sandbox_for_files(self) -> Sandbox:
        self._check_usable()
        if self._box.current is not None:
            return self._box.current
        if self.record.status == STARTING:
            raise SessionBusy(
                "The session is still starting", details={"sessionId": self.id, "status": STARTING}
            )
        async with self._mailbox:
            if self._box.current is not None:
                return self._box.current
            if self._cluster is not None:
                sandbox = await self._box.attach_for_reading()
                if sandbox is not None:
                    return sandbox
                await self._owner.claim()
            try:
                was_paused = self.record.status == PAUSED
                sandbox = await self._box.ensure()
                if was_paused:
                    await self._set_status(IDLE, ev.SESSION_RESUMED)
                return sandbox
            finally:
                await self._owner.release()

    async def logs(self, tail: int) -> list[str]:
        try:
            provider_lines = await self._provider.logs(self.id, self.record.sandbox_id, tail)
        except Exception as exc:
            provider_lines = [f"(sandbox logs unavailable: {sandbox_message(exc, 'error')})"]
        lines = [f"[agent] {line}" for line in self._logs] + [
            f"[sandbox] {line}" for line in provider_lines
        ]
        engine_logs = getattr(self._engine, "logs", None)
        sandbox = self._box.current
        if engine_logs is not None and sandbox is not None:
            try:
                engine_lines = await engine_logs(sandbox, tail)
            except Exception as exc:
                engine_lines = [f"(logs unavailable: {sandbox_message(exc, 'error')})"]
            lines += [f"[{self.record.engine}] {line}" for line in engine_lines]
        return lines[-tail:] if tail else []

    async def follow(self, after_seq: int | None) -> AsyncIterator[bytes]:
        """SSE frames of this session after ``after_seq`` (None: from now), following
        live. Raises before the first frame when the stream cannot be followed."""
        follower = self.events.subscribe()
        await self.events.ready(follower)
        return self.events.frames(
            after_seq, keepalive=self._settings.keepalive_seconds, follower=follower
        )

    @property
    def idle_for(self) -> float:
        return time.monotonic() - self.last_used
