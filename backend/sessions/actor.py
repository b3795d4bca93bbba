"""``SessionActor``: the one owner of a session's state, sandbox and event stream.

Every command (send a message, interrupt, pause, resume, rename, terminate) is
a method here, serialised by the actor's mailbox lock, so two turns never race
and the stored state has a single writer. A turn runs as a task of its own so
that ``interrupt`` can reach it while it runs.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend import events as ev
from backend.agent.types import ModelError, TurnResult
from backend.errors import (
    ApiError,
    ModelFailed,
    SandboxError,
    ServiceUnavailable,
    SessionBusy,
    SessionFailed,
    SessionTerminated,
    StoreUnavailable,
)
from backend.records import (
    ERROR,
    IDLE,
    PAUSED,
    RUNNING,
    STARTING,
    TERMINATED,
    MessageRecord,
    SessionRecord,
    ToolCall,
    UsageRecord,
    new_id,
    utcnow,
)
from backend.sessions.eventlog import EventLog
from backend.sessions.permissions import PermissionGate, request_json
from backend.sessions.tool_output import ToolOutputStream
from backend.settings import Settings
from backend.store.base import Store
from sandbox.base import (
    FileEntry,
    Sandbox,
    SandboxProvider,
    SnapshotLost,
    check_not_reserved,
    visible_entries,
)

if TYPE_CHECKING:
    from backend.sessions.cluster import Cluster
    from backend.sessions.lease import HeldLease

# The stop reason of a turn whose replica died (or shut down) before it ended.
STOP_LOST = "lost"

log = logging.getLogger("agent_tui.sessions")


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
    """Owns one session. Create with ``SessionActor.load`` or via the registry."""

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
        self._lease: HeldLease | None = None
        self._abandoned = False
        self._mailbox = asyncio.Lock()
        self._sandbox: Sandbox | None = None
        self._sandbox_started: float | None = None
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
        if self._abandoned:
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
        if self._sandbox_started is None:
            return self.record
        running = time.monotonic() - self._sandbox_started
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

    # ------------------------------------------------------------------ replicas mode

    @property
    def holds_lease(self) -> bool:
        """This replica works on the session now (replicas mode)."""
        return self._lease is not None

    async def refresh(self) -> None:
        """Replicas mode: reload the record, which other replicas may have changed.
        A no-op while this replica holds the lease (its record is the truth)."""
        if self._cluster is None or self._lease is not None:
            return
        record = await self._store.get_session(self.id)
        if record is None:
            return
        self.record = record
        self.events.last_seq = max(self.events.last_seq, record.last_seq)
        sandbox = self._sandbox
        if sandbox is not None and (
            record.sandbox_id != sandbox.id or record.sandbox_state != "ready"
        ):
            # Paused, resumed or deleted elsewhere: this handle is stale.
            self._sandbox = None
            self._sandbox_started = None

    def adopt_lease(self, lease: HeldLease) -> None:
        """Hold ``lease`` (taken by the registry before creating the session)."""
        self._lease = lease
        lease.keep(on_lost=self._lease_lost)

    def _lease_lost(self) -> None:
        # Another replica may own the session now: stop writing to it.
        self._abandoned = True
        for task in (self._turn, self._setup):
            if task is not None and not task.done():
                task.cancel()

    async def _take_lease(self, wait: float = 0.0) -> HeldLease | None:
        """Replicas mode: take the lease, then reload the record and take over the
        event numbering. None when another replica holds it (after ``wait`` s)."""
        assert self._cluster is not None
        if self._lease is not None:
            return None
        deadline = time.monotonic() + wait
        while True:
            lease = await self._cluster.leases.acquire(self.id)
            if lease is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        if lease is None:
            return None
        try:
            await self.refresh()
            await self.events.sync(self.record.last_seq)
        except BaseException:
            await lease.release()
            raise
        self._abandoned = False
        self.adopt_lease(lease)
        return lease

    async def _claim(self, wait: float = 0.0) -> None:
        """Replicas mode: hold the lease for a command, or answer ``SESSION_BUSY``."""
        if self._cluster is None:
            return
        if await self._take_lease(wait) is None:
            await self.refresh()
            self._check_not_busy()
            raise SessionBusy(
                "The session is busy on another replica",
                details={"sessionId": self.id, "status": self.record.status},
            )

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        """Replicas mode: hold the lease for a command, unless this replica's own turn
        holds it already (the mailbox then orders the command)."""
        if self._cluster is None or self._lease is not None:
            yield
            return
        await self._claim()
        try:
            yield
        finally:
            await self._unclaim()

    async def _unclaim(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            await lease.release()

    @property
    def _lost(self) -> bool:
        return self._abandoned or (self._lease is not None and self._lease.lost)

    async def recover(self) -> bool:
        """Replicas mode: end what a dead replica left running on this session (its
        lease expired): a turn ends with ``message.complete`` (stopReason ``lost``)
        and ``session.idle``; a sandbox being created, with ``session.error``.
        Return whether this replica did it."""
        async with self._mailbox:
            if self._cluster is None or self._turn is not None or self._setup_running:
                return False
            if await self._take_lease() is None:
                return False
            try:
                if self.record.status == RUNNING:
                    await self._end_lost_turn()
                elif self.record.status == STARTING:
                    await self._fail(
                        "SANDBOX_ERROR",
                        "The server creating the sandbox stopped; start a new session",
                    )
                else:
                    return False
            finally:
                await self._unclaim()
            return True

    async def _end_lost_turn(self) -> None:
        messages = await self._store.list_messages(self.id, limit=2)
        assistant = next(
            (m for m in reversed(messages) if m.role == "assistant" and m.stop_reason is None),
            None,
        )
        if assistant is not None:
            # Text streamed since the last stored step is only in the event stream.
            streamed = await self.events.streamed_text(assistant.id)
            if len(streamed) > len(assistant.content):
                assistant.content = streamed
            await self._store.update_message(
                assistant.id, {"stop_reason": STOP_LOST, "content": assistant.content}
            )
            await self._emit(
                ev.MESSAGE_COMPLETE,
                {
                    "messageId": assistant.id,
                    "role": "assistant",
                    "content": assistant.content,
                    "stopReason": STOP_LOST,
                    "usage": assistant.usage,
                },
            )
        await self._set_status(IDLE, ev.SESSION_IDLE)
        self._log("the turn was lost with its server; ended it")

    async def abandon(self) -> None:
        """Shutdown after the drain bound: stop this replica's work on the session
        without a word, then free the lease, so another replica ends it as lost."""
        self._abandoned = True
        await self.close()
        await self._unclaim()

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
            await self._setup_sandbox(repo, git_token)
        finally:
            git_token = None
            await self._unclaim()

    async def _setup_sandbox(self, repo: str | None, git_token: str | None) -> None:
        async def progress(message: str) -> None:
            await self._emit(ev.SESSION_PROGRESS, {"message": message})

        try:
            await self._save(sandbox_state="starting")
            sandbox = await self._provider.create(
                self.id, repo=repo, git_token=git_token, on_progress=progress
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail("SANDBOX_ERROR", _sandbox_message(exc, "Could not create the sandbox"))
            return
        finally:
            git_token = None
        self._attach(sandbox)
        await self._save(sandbox_id=sandbox.id, sandbox_state="ready")
        try:
            await self._prepare_engine(sandbox, progress)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._fail("SANDBOX_ERROR", _sandbox_message(exc, "Could not start the engine"))
            return
        await self._set_status(IDLE, ev.SESSION_READY)
        self._log(f"sandbox {sandbox.id} ready")

    @property
    def _engine(self) -> Any:
        return self._deps.engine_for(self.record.engine)

    async def _prepare_engine(self, sandbox: Sandbox, progress: Any = None) -> None:
        """Start an engine that lives in the sandbox (OpenCode); for the built-in one,
        give the sandbox's commands the model proxy."""
        prepare = getattr(self._engine, "prepare", None)
        if prepare is None:
            await self._grant_model_access(sandbox)
            return
        if progress is not None:
            await progress(f"starting {self.record.engine}")
        await prepare(
            session_id=self.id,
            user_id=self.record.user_id,
            sandbox=sandbox,
            model=self.record.model,
        )
        self._log(f"engine {self.record.engine} ready in {sandbox.id}")

    async def _grant_model_access(self, sandbox: Sandbox) -> None:
        access = self._deps.model_access
        if access is None:
            return
        try:
            await access.grant(session_id=self.id, user_id=self.record.user_id, sandbox=sandbox)
        except Exception as exc:  # the agent works without it; the next turn tries again
            self._log(f"model proxy not given to the sandbox: {type(exc).__name__}")

    async def _release_engine(self, *, forget: bool = False) -> None:
        """Stop an in-sandbox engine before its sandbox pauses or goes (``forget``: deleted)."""
        # On delete every engine forgets the session: whatever it minted for it
        # (model-proxy tokens, on any replica) dies with it.
        engines = [*self._deps.engines.values()] if forget else [self._engine]
        if self._deps.model_access is not None:
            engines.append(self._deps.model_access)
        for engine in engines:
            method = getattr(engine, "forget" if forget else "release", None)
            if method is None:
                continue
            try:
                await method(self.id)
            except Exception as exc:
                self._log(f"stopping engine failed: {type(exc).__name__}")

    async def wait_setup(self) -> None:
        """Wait for the background set-up (tests, and the create-with-progress stream)."""
        if self._setup is not None:
            await asyncio.shield(self._setup)

    def _attach(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._sandbox_started = time.monotonic()

    async def _detach_sandbox(self) -> None:
        """Account the sandbox's running time and forget the handle."""
        if self._sandbox_started is not None:
            seconds = time.monotonic() - self._sandbox_started
            self._sandbox_started = None
            await self._save(sandbox_seconds=self.record.sandbox_seconds + seconds)
            await self._usage("sandbox.seconds", round(seconds, 3))
        self._sandbox = None

    async def _fail(self, code: str, message: str) -> None:
        self._log(f"session error {code}: {message}")
        await self._save(
            status=ERROR, sandbox_state="error", error={"code": code, "message": message}
        )
        await self._emit(ev.SESSION_ERROR, {"code": code, "message": message})

    async def _ensure_sandbox(self) -> Sandbox:
        """A running sandbox: reattach after a restart, or resume a paused one."""
        if self._sandbox is not None:
            return self._sandbox
        rec = self.record
        if rec.sandbox_id and rec.sandbox_state == "ready":
            try:
                sandbox = await self._provider.attach(self.id, rec.sandbox_id)
            except Exception as exc:
                raise SandboxError(
                    _sandbox_message(exc, "Could not reattach to the sandbox")
                ) from exc
            if sandbox is not None:
                self._attach(sandbox)
                return sandbox
            self._log(f"sandbox {rec.sandbox_id} is gone")
        if rec.snapshot_id:
            await self._resume_from_snapshot()
            assert self._sandbox is not None
            return self._sandbox
        if rec.sandbox_id and rec.sandbox_state == "ready":
            message = "The sandbox stopped and no snapshot was taken: its workspace is lost"
            await self._fail("SANDBOX_LOST", message)
            raise SandboxError(message, details={"sessionId": self.id})
        raise SandboxError("The session has no sandbox", details={"sessionId": self.id})

    async def _resume_from_snapshot(self) -> None:
        snapshot_id = self.record.snapshot_id
        assert snapshot_id is not None
        await self._save(sandbox_state="resuming")
        try:
            sandbox = await self._provider.resume(self.id, snapshot_id)
        except SnapshotLost as exc:
            await self._fail("SNAPSHOT_LOST", exc.message)
            raise
        except Exception as exc:
            message = _sandbox_message(exc, "Could not resume the sandbox")
            await self._save(sandbox_state="paused")
            raise SandboxError(message, details={"sessionId": self.id}) from exc
        self._attach(sandbox)
        await self._save(sandbox_id=sandbox.id, sandbox_state="ready", snapshot_id=None)
        self._log(f"sandbox {sandbox.id} resumed from {snapshot_id}")

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
            await self._claim()
            try:
                return await self._start_turn(content)
            except BaseException:
                if self._turn is None:
                    await self._unclaim()
                raise

    async def _start_turn(self, content: str) -> tuple[str, ev.Event]:
        self._check_not_busy()
        was_paused = self.record.status == PAUSED
        running = await self._emit(ev.SESSION_RUNNING)
        await self._save(status=RUNNING, last_activity_at=utcnow(), error=None)
        try:
            await self._prepare_engine(await self._ensure_sandbox())
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
        self._turn = asyncio.create_task(
            self._run_turn(content, message_id), name=f"turn-{self.id}"
        )
        return message_id, running

    async def _run_turn(self, content: str, message_id: str) -> None:
        now = utcnow()
        user = MessageRecord(
            id=new_id(),
            session_id=self.id,
            role="user",
            content=content,
            created_at=now,
            model_messages=[{"role": "user", "content": [{"type": "text", "text": content}]}],
        )
        assistant = MessageRecord(
            id=message_id, session_id=self.id, role="assistant", content="", created_at=now
        )

        async def call(observer: _TurnObserver) -> TurnResult:
            history = await self._history()
            await self._store.add_message(user)
            await self._store.add_message(assistant)
            await self._save(message_count=self.record.message_count + 2)
            await self._usage("message.sent", 1)
            await self._emit(ev.MESSAGE_USER, {"messageId": user.id, "content": content})
            return await self._engine.run_turn(
                history=history,
                user_content=content,
                system_prompt=self.record.system_prompt,
                model=self.record.model,
                sandbox=self._sandbox,
                observer=observer,
                thinking=bool(self.record.options.get("thinking")),
            )

        await self._drive_turn(assistant, call)

    async def _drive_turn(
        self,
        assistant: MessageRecord,
        call: Callable[[_TurnObserver], Awaitable[TurnResult]],
    ) -> None:
        """Run one turn's model/tool loop (``call``) and end it, whatever happens: the
        message is finished and stored, failures become ``error`` events, the session
        goes back to idle and the lease is freed."""
        observer = _TurnObserver(self, assistant)
        try:
            try:
                result = await call(observer)
            except ModelError as exc:
                await observer.drain()
                if exc.partial is not None:
                    await observer.on_step(exc.partial)
                await self._finish_turn(assistant, exc.partial, stop_reason="error")
                await self._emit(
                    ev.ERROR, {"code": exc.code, "message": exc.message, "details": exc.details}
                )
                self._log(f"turn failed: {exc.code} {exc.message}")
            else:
                task = asyncio.current_task()
                if result.stop_reason == "interrupted" and task is not None and task.cancelling():
                    # The loop absorbed the interrupt; clear it so later awaits run normally.
                    task.uncancel()
                await observer.drain()
                await self._finish_turn(assistant, result, stop_reason=result.stop_reason)
        except asyncio.CancelledError:
            # Cancelled outside the agent loop (terminate, shutdown): nothing more to say.
            raise
        except StoreUnavailable as exc:
            self._log(f"turn failed: database unavailable: {exc.message}")
            with contextlib.suppress(Exception):
                await self._emit(ev.ERROR, exc.body()["error"])
        except Exception as exc:
            log.exception("turn failed in session %s", self.id)
            self._log(f"turn failed: internal error: {type(exc).__name__}")
            with contextlib.suppress(Exception):
                await self._emit(
                    ev.ERROR,
                    {
                        "code": "INTERNAL_ERROR",
                        "message": "The turn failed unexpectedly",
                        "details": {},
                    },
                )
        finally:
            if self.record.status == RUNNING and not self._lost:
                with contextlib.suppress(Exception):
                    await self._set_status(IDLE, ev.SESSION_IDLE)
            self._turn = None
            with contextlib.suppress(Exception):
                await self._unclaim()

    async def _history(self) -> list[dict[str, Any]]:
        history: list[dict[str, Any]] = []
        for message in await self._store.list_messages(self.id):
            history.extend(message.model_messages)
        # Stored as it happened; the agent loop repairs what it sends (a crash between a
        # tool_use and its result leaves one unanswered).
        return history

    async def _finish_turn(
        self, assistant: MessageRecord, result: TurnResult | None, *, stop_reason: str
    ) -> None:
        if self._lost:
            # Another replica ends this turn (as lost); write nothing more.
            raise SessionBusy("The session moved to another server", details={"sessionId": self.id})
        result = result or TurnResult(stop_reason=stop_reason, text="")
        usage = result.usage
        assistant.content = result.text
        assistant.tool_calls = result.tool_calls
        assistant.stop_reason = stop_reason
        assistant.usage = usage.to_json()
        assistant.model_messages = list(result.model_messages)
        await self._store.update_message(
            assistant.id,
            {
                "content": assistant.content,
                "tool_calls": assistant.tool_calls,
                "stop_reason": stop_reason,
                "usage": assistant.usage,
                "model_messages": assistant.model_messages,
            },
        )
        await self._save(
            input_tokens=self.record.input_tokens
            + usage.input_tokens
            + usage.cache_creation_tokens,
            output_tokens=self.record.output_tokens + usage.output_tokens,
            cache_read_tokens=self.record.cache_read_tokens + usage.cache_read_tokens,
            last_activity_at=utcnow(),
        )
        records = [
            UsageRecord(new_id(), self.record.user_id, kind, qty, utcnow(), self.id)
            for kind, qty in (
                ("tokens.input", usage.input_tokens + usage.cache_creation_tokens),
                ("tokens.output", usage.output_tokens),
                ("tokens.cache_read", usage.cache_read_tokens),
            )
            if qty
        ]
        if records:
            await self._store.add_usage(records)
        if stop_reason != "error":
            await self._emit(
                ev.MESSAGE_COMPLETE,
                {
                    "messageId": assistant.id,
                    "role": "assistant",
                    "content": assistant.content,
                    "stopReason": stop_reason,
                    "usage": assistant.usage,
                },
            )
        self._log(f"turn {assistant.id} ended: {stop_reason}")

    async def interrupt(self) -> bool:
        """Stop the running turn, if any; return whether one was running."""
        turn = self._turn
        if turn is None or turn.done():
            return await self._forward("interrupt") == {"interrupted": True}
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
            await self._claim()
            try:
                await self._pause(auto)
            finally:
                await self._unclaim()

    async def _pause(self, auto: bool) -> None:
        self._check_not_busy()
        if self.record.status == PAUSED:
            return
        if auto and self._cluster is not None:
            idle = (utcnow() - self.record.last_activity_at).total_seconds()
            if idle < self._settings.sandbox_idle_pause_seconds:
                return  # used on another replica meanwhile
        sandbox = await self._ensure_sandbox()
        await self._release_engine()
        await self._save(sandbox_state="pausing")
        try:
            snapshot_id = await self._provider.pause(sandbox)
        except Exception as exc:
            await self._save(sandbox_state="ready")
            raise SandboxError(_sandbox_message(exc, "Could not pause the sandbox")) from exc
        await self._detach_sandbox()
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
            await self._claim()
            try:
                self._check_not_busy()
                if self.record.status != PAUSED:
                    return
                sandbox = await self._ensure_sandbox()
                await self._set_status(IDLE, ev.SESSION_RESUMED)
                try:
                    await self._prepare_engine(sandbox)
                except ApiError as exc:
                    # The sandbox runs; the next message tries the engine again.
                    self._log(f"engine {self.record.engine} did not start: {exc.message}")
            finally:
                await self._unclaim()

    async def rename(self, title: str) -> None:
        async with self._mailbox:
            if self._cluster is not None and self._lease is None:
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
        async with self._mailbox, self._held():
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
            async with self._held():
                return await self._compact()

    async def _compact(self) -> dict[str, Any] | None:
        messages = await self._store.list_messages(self.id)
        if not messages:
            return None
        history = [m for message in messages for m in message.model_messages]
        try:
            marker = await self._deps.agent.compact(
                history=history,
                system_prompt=self.record.system_prompt,
                model=self.record.model,
            )
        except ModelError as exc:
            raise ModelFailed(exc.code, exc.message, details=exc.details) from exc
        if marker is None:
            return None
        last = messages[-1]
        # After the last message's own model messages: a later history read
        # replaces everything before the marker with the summary.
        await self._store.update_message(
            last.id, {"model_messages": [*last.model_messages, marker]}
        )
        before, after = int(marker["tokensBefore"]), int(marker["tokensAfter"])
        data = {
            "messageId": last.id,
            "method": marker["method"],
            "automatic": False,
            "tokensBefore": before,
            "tokensAfter": after,
            "tokensSaved": max(0, before - after),
        }
        await self._emit(ev.CONTEXT_COMPACTED, data)
        self._log(f"context compacted on demand: {before} -> {after} tokens")
        return data

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
                if await self._take_lease() is None:
                    return  # another replica works on the session
                if self.busy or self.record.status in (TERMINATED, ERROR):
                    await self._unclaim()
                    return
            try:
                await self._resume_cut_turn_held(message_id, tool_use_id)
            finally:
                if self._turn is None:
                    await self._unclaim()

    async def _resume_cut_turn_held(self, message_id: str, tool_use_id: str) -> None:
        if getattr(self._engine, "resume_turn", None) is None:
            return  # OpenCode keeps its own turn state: a cut turn there is over
        messages = await self._store.list_messages(self.id)
        if not messages or messages[-1].id != message_id:
            return  # a later turn ran meanwhile: that request's turn is over
        assistant = messages[-1]
        if not any(c.id == tool_use_id and c.is_error for c in assistant.tool_calls):
            return
        was_paused = self.record.status == PAUSED
        await self._emit(ev.SESSION_RUNNING)
        await self._save(status=RUNNING, last_activity_at=utcnow(), error=None)
        try:
            await self._ensure_sandbox()
        except ApiError as exc:
            await self._emit(ev.ERROR, exc.body()["error"])
            if self.record.status == RUNNING:
                await self._set_status(PAUSED if was_paused else IDLE, ev.SESSION_IDLE)
            return
        history = [m for message in messages[:-1] for m in message.model_messages]
        self._turn = asyncio.create_task(
            self._run_resumed(assistant, history), name=f"turn-{self.id}"
        )
        self._log(f"turn {assistant.id} resumed after its permission answer")

    async def _run_resumed(self, assistant: MessageRecord, history: list[dict[str, Any]]) -> None:
        partial = TurnResult(
            stop_reason="tool_use",
            text=assistant.content,
            tool_calls=assistant.tool_calls,
            model_messages=assistant.model_messages,
        )
        await self._drive_turn(
            assistant,
            lambda observer: self._engine.resume_turn(
                history=history,
                partial=partial,
                system_prompt=self.record.system_prompt,
                model=self.record.model,
                sandbox=self._sandbox,
                observer=observer,
                thinking=bool(self.record.options.get("thinking")),
            ),
        )

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
            if await self._forward("terminate") is not None:
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
            await self._claim(wait=15.0 if self._cluster is not None else 0.0)
            await self._release_engine(forget=True)
            try:
                await self._terminate()
            finally:
                await self._unclaim()

    async def _forward(self, command: str) -> dict[str, Any] | None:
        """Replicas mode: run ``command`` on the replica holding the lease, if
        another one does; its answer, or None (no other holder, or it is dead)."""
        if self._cluster is None:
            return None
        owner = await self._cluster.leases.owner_of(self.id)
        if owner is None or owner == self._cluster.replica_id:
            return None
        try:
            return await self._cluster.send_command(owner, command, self.id)
        except TimeoutError:
            log.warning("replica %s did not answer %s for %s", owner, command, self.id)
            return None

    async def _terminate(self) -> None:
        if self.record.status == TERMINATED:
            return
        try:
            await self._provider.terminate(self.id, self.record.sandbox_id, self.record.snapshot_id)
        except Exception as exc:
            # The session ends anyway; the periodic sweep retries the clean-up.
            self._log(f"terminate failed, left to the sweep: {_sandbox_message(exc, 'error')}")
        await self._detach_sandbox()
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
        if self._sandbox is not None:
            return self._sandbox
        if self.record.status == STARTING:
            raise SessionBusy(
                "The session is still starting", details={"sessionId": self.id, "status": STARTING}
            )
        async with self._mailbox:
            if self._sandbox is not None:
                return self._sandbox
            if self._cluster is not None:
                sandbox = await self._attach_for_reading()
                if sandbox is not None:
                    return sandbox
                await self._claim()
            try:
                was_paused = self.record.status == PAUSED
                sandbox = await self._ensure_sandbox()
                if was_paused:
                    await self._set_status(IDLE, ev.SESSION_RESUMED)
                return sandbox
            finally:
                await self._unclaim()

    async def _attach_for_reading(self) -> Sandbox | None:
        """Replicas mode: reattach the running sandbox by its stored id, without the
        lease (reading files does not change the session; a turn may run elsewhere)."""
        rec = self.record
        if rec.status == PAUSED or not rec.sandbox_id or rec.sandbox_state != "ready":
            return None
        try:
            sandbox = await self._provider.attach(self.id, rec.sandbox_id)
        except Exception as exc:
            raise SandboxError(_sandbox_message(exc, "Could not reattach to the sandbox")) from exc
        if sandbox is not None:
            self._sandbox = sandbox  # not _attach: the running time is the holder's to count
        return sandbox

    async def logs(self, tail: int) -> list[str]:
        try:
            provider_lines = await self._provider.logs(self.id, self.record.sandbox_id, tail)
        except Exception as exc:
            provider_lines = [f"(sandbox logs unavailable: {_sandbox_message(exc, 'error')})"]
        lines = [f"[agent] {line}" for line in self._logs] + [
            f"[sandbox] {line}" for line in provider_lines
        ]
        engine_logs = getattr(self._engine, "logs", None)
        if engine_logs is not None and self._sandbox is not None:
            try:
                engine_lines = await engine_logs(self._sandbox, tail)
            except Exception as exc:
                engine_lines = [f"(logs unavailable: {_sandbox_message(exc, 'error')})"]
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


class _TurnObserver:
    """Turns the agent loop's callbacks into events and persisted steps.

    Text deltas are published from a task that runs when the turn next waits
    for the network: deltas parsed from one read of the model's stream go out
    as one ``message.assistant`` fragment. A paced stream keeps one event per
    delta; a burst (a model faster than its readers, a loaded server) costs
    one event instead of dozens, with no added wait.
    """

    def __init__(self, actor: SessionActor, assistant: MessageRecord) -> None:
        self._actor = actor
        self._assistant = assistant
        self._pending: list[str] = []
        self._flush: asyncio.Task[None] | None = None
        self._thinking: list[str] = []
        self._thinking_flush: asyncio.Task[None] | None = None
        self._outputs: dict[str, ToolOutputStream] = {}

    async def on_text_delta(self, text: str) -> None:
        self._pending.append(text)
        if self._flush is None:
            self._flush = asyncio.create_task(self._publish_pending())

    async def _publish_pending(self) -> None:
        # Deltas that arrive while an event is being published (a Redis round trip
        # in replicas mode) join the next event instead of queueing one task each.
        try:
            while self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                await self._actor._emit(
                    ev.MESSAGE_ASSISTANT,
                    {"messageId": self._assistant.id, "content": text, "isPartial": True},
                )
        finally:
            self._flush = None

    async def drain(self) -> None:
        """Publish pending text now: every other event comes after it."""
        flush = self._flush
        if flush is not None:
            # Shielded: an interrupt must not drop text already received.
            await asyncio.shield(flush)
        if self._pending:
            await self._publish_pending()
        if self._thinking:
            await self._publish_thinking()

    # Extended thinking: partial events coalesced per network read, like text.

    async def on_thinking_delta(self, text: str) -> None:
        self._thinking.append(text)
        if self._thinking_flush is None:
            self._thinking_flush = asyncio.create_task(self._publish_thinking())

    async def _publish_thinking(self) -> None:
        try:
            while self._thinking:
                text = "".join(self._thinking)
                self._thinking.clear()
                await self._actor._emit(
                    ev.MESSAGE_THINKING,
                    {"messageId": self._assistant.id, "content": text, "isPartial": True},
                )
        finally:
            self._thinking_flush = None

    async def on_thinking_done(self, text: str) -> None:
        flush = self._thinking_flush
        if flush is not None:
            await asyncio.shield(flush)
        await self.drain()
        await self._actor._emit(
            ev.MESSAGE_THINKING,
            {"messageId": self._assistant.id, "content": text, "isPartial": False},
        )

    async def on_text_done(self, text: str) -> None:
        await self.drain()
        await self._actor._emit(
            ev.MESSAGE_ASSISTANT,
            {"messageId": self._assistant.id, "content": text, "isPartial": False},
        )

    async def on_tool_call(self, call: ToolCall) -> None:
        await self.drain()
        await self._actor._emit(
            ev.MESSAGE_TOOL,
            {
                "messageId": self._assistant.id,
                "toolId": call.id,
                "toolName": call.name,
                "status": "calling",
                "arguments": call.arguments,
            },
        )

    async def check_permission(self, call: ToolCall) -> str | None:
        await self.drain()
        return await self._actor.permissions.check(call, self._assistant.id)

    async def on_compacted(self, info: dict[str, Any]) -> None:
        await self.drain()
        await self._actor._emit(ev.CONTEXT_COMPACTED, {"messageId": self._assistant.id, **info})

    async def on_tool_output(self, call: ToolCall, stream: str, text: str) -> None:
        output = self._outputs.get(call.id)
        if output is None:
            settings = self._actor._settings
            output = self._outputs[call.id] = ToolOutputStream(
                self._actor._emit,
                message_id=self._assistant.id,
                tool_id=call.id,
                rate=settings.tool_output_events_per_second,
                max_bytes=settings.tool_output_stream_max_bytes,
            )
        await output.add(stream, text)

    async def on_tool_result(self, call: ToolCall) -> None:
        output = self._outputs.pop(call.id, None)
        if output is not None:
            await output.close()
        await self.drain()
        await self._actor._emit(
            ev.MESSAGE_TOOL,
            {
                "messageId": self._assistant.id,
                "toolId": call.id,
                "toolName": call.name,
                "status": "result",
                "arguments": call.arguments,
                "result": call.result,
                "isError": call.is_error,
            },
        )

    async def on_step(self, result: TurnResult) -> None:
        # Persist the turn so far: a restarted server continues from here.
        await self._actor._store.update_message(
            self._assistant.id,
            {
                "content": result.text,
                "tool_calls": result.tool_calls,
                "model_messages": list(result.model_messages),
            },
        )


def _sandbox_message(exc: BaseException, fallback: str) -> str:
    """A message a user can act on, without internals."""
    if isinstance(exc, ApiError):
        return exc.message
    return f"{fallback}: {type(exc).__name__}"
