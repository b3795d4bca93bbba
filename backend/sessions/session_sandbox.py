"""``SessionSandbox``: a session's sandbox through its life, and the engine in it.

The running sandbox's handle and the time it has run (``sandbox_seconds``), and
each step of its life: create (the set-up), reattach after a restart, resume
from a snapshot, pause to a snapshot, terminate. An engine that lives in the
sandbox (OpenCode) starts and stops with it; the built-in engine gets the model
proxy instead.

A part of ``SessionActor``: only the actor's methods call it, in its mailbox
order, and it changes the session's record only through the actor's ``_save``,
``_fail`` and ``_set_status``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from backend import events as ev
from backend.errors import ApiError, SandboxError
from backend.records import IDLE, PAUSED
from sandbox.base import Sandbox, SnapshotLost

if TYPE_CHECKING:
    from backend.sessions.actor import SessionActor


def sandbox_message(exc: BaseException, fallback: str) -> str:
    """A message a user can act on, without internals."""
    if isinstance(exc, ApiError):
        return exc.message
    return f"{fallback}: {type(exc).__name__}"


class SessionSandbox:
    """The sandbox of one session: its handle, running time and life cycle."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor
        self._provider = actor._deps.provider
        # The running sandbox (None: paused, gone, or not attached in this process).
        self.current: Sandbox | None = None
        # When this process attached it (monotonic); its running time is counted from here.
        self._started: float | None = None

    @property
    def running_seconds(self) -> float:
        """How long the attached sandbox has run since it was last accounted."""
        if self._started is None:
            return 0.0
        return time.monotonic() - self._started

    @property
    def counting(self) -> bool:
        """This process counts the sandbox's running time (it attached it)."""
        return self._started is not None

    def forget(self) -> None:
        """Drop a stale handle (paused, resumed or deleted on another replica)."""
        self.current = None
        self._started = None

    def _attach(self, sandbox: Sandbox) -> None:
        self.current = sandbox
        self._started = time.monotonic()

    async def _detach(self) -> None:
        """Account the sandbox's running time and forget the handle."""
        actor = self._actor
        if self._started is not None:
            seconds = time.monotonic() - self._started
            self._started = None
            await actor._save(sandbox_seconds=actor.record.sandbox_seconds + seconds)
            await actor._usage("sandbox.seconds", round(seconds, 3))
        self.current = None

    # ------------------------------------------------------------------ life cycle

    async def set_up(self, repo: str | None, git_token: str | None) -> None:
        """Create the sandbox and start the engine; the session ends ``starting`` with
        ``session.ready``, or ``session.error`` when either fails."""
        actor = self._actor

        async def progress(message: str) -> None:
            await actor._emit(ev.SESSION_PROGRESS, {"message": message})

        try:
            await actor._save(sandbox_state="starting")
            sandbox = await self._provider.create(
                actor.id, repo=repo, git_token=git_token, on_progress=progress
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await actor._fail("SANDBOX_ERROR", sandbox_message(exc, "Could not create the sandbox"))
            return
        finally:
            git_token = None
        self._attach(sandbox)
        await actor._save(sandbox_id=sandbox.id, sandbox_state="ready")
        try:
            await self.prepare_engine(sandbox, progress)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await actor._fail("SANDBOX_ERROR", sandbox_message(exc, "Could not start the engine"))
            return
        await actor._set_status(IDLE, ev.SESSION_READY)
        actor._log(f"sandbox {sandbox.id} ready")

    async def ensure(self) -> Sandbox:
        """A running sandbox: reattach after a restart, or resume a paused one."""
        if self.current is not None:
            return self.current
        actor = self._actor
        rec = actor.record
        if rec.sandbox_id and rec.sandbox_state == "ready":
            try:
                sandbox = await self._provider.attach(actor.id, rec.sandbox_id)
            except Exception as exc:
                raise SandboxError(
                    sandbox_message(exc, "Could not reattach to the sandbox")
                ) from exc
            if sandbox is not None:
                self._attach(sandbox)
                return sandbox
            actor._log(f"sandbox {rec.sandbox_id} is gone")
        if rec.snapshot_id:
            await self._resume_from_snapshot()
            assert self.current is not None
            return self.current
        if rec.sandbox_id and rec.sandbox_state == "ready":
            message = "The sandbox stopped and no snapshot was taken: its workspace is lost"
            await actor._fail("SANDBOX_LOST", message)
            raise SandboxError(message, details={"sessionId": actor.id})
        raise SandboxError("The session has no sandbox", details={"sessionId": actor.id})

    async def _resume_from_snapshot(self) -> None:
        actor = self._actor
        snapshot_id = actor.record.snapshot_id
        assert snapshot_id is not None
        await actor._save(sandbox_state="resuming")
        try:
            sandbox = await self._provider.resume(actor.id, snapshot_id)
        except SnapshotLost as exc:
            await actor._fail("SNAPSHOT_LOST", exc.message)
            raise
        except Exception as exc:
            message = sandbox_message(exc, "Could not resume the sandbox")
            await actor._save(sandbox_state="paused")
            raise SandboxError(message, details={"sessionId": actor.id}) from exc
        self._attach(sandbox)
        await actor._save(sandbox_id=sandbox.id, sandbox_state="ready", snapshot_id=None)
        actor._log(f"sandbox {sandbox.id} resumed from {snapshot_id}")

    async def attach_for_reading(self) -> Sandbox | None:
        """Replicas mode: reattach the running sandbox by its stored id, without the
        lease (reading files does not change the session; a turn may run elsewhere)."""
        actor = self._actor
        rec = actor.record
        if rec.status == PAUSED or not rec.sandbox_id or rec.sandbox_state != "ready":
            return None
        try:
            sandbox = await self._provider.attach(actor.id, rec.sandbox_id)
        except Exception as exc:
            raise SandboxError(sandbox_message(exc, "Could not reattach to the sandbox")) from exc
        if sandbox is not None:
            self.current = sandbox  # not _attach: the running time is the holder's to count
        return sandbox

    async def pause(self) -> str:
        """Stop the engine, snapshot the sandbox and stop it; the snapshot's id."""
        actor = self._actor
        sandbox = await self.ensure()
        await self.release_engine()
        await actor._save(sandbox_state="pausing")
        try:
            snapshot_id = await self._provider.pause(sandbox)
        except Exception as exc:
            await actor._save(sandbox_state="ready")
            raise SandboxError(sandbox_message(exc, "Could not pause the sandbox")) from exc
        await self._detach()
        return snapshot_id

    async def terminate(self) -> None:
        """Delete the sandbox (and its snapshot); a failure is left to the sweep."""
        actor = self._actor
        rec = actor.record
        try:
            await self._provider.terminate(actor.id, rec.sandbox_id, rec.snapshot_id)
        except Exception as exc:
            # The session ends anyway; the periodic sweep retries the clean-up.
            actor._log(f"terminate failed, left to the sweep: {sandbox_message(exc, 'error')}")
        await self._detach()

    # ------------------------------------------------------------------ the engine in it

    async def prepare_engine(
        self, sandbox: Sandbox, progress: Callable[[str], Awaitable[None]] | None = None
    ) -> None:
        """Start an engine that lives in the sandbox (OpenCode); for the built-in one,
        give the sandbox's commands the model proxy."""
        actor = self._actor
        prepare = getattr(actor._engine, "prepare", None)
        if prepare is None:
            await self._grant_model_access(sandbox)
            return
        if progress is not None:
            await progress(f"starting {actor.record.engine}")
        await prepare(
            session_id=actor.id,
            user_id=actor.record.user_id,
            sandbox=sandbox,
            model=actor.record.model,
        )
        actor._log(f"engine {actor.record.engine} ready in {sandbox.id}")

    async def _grant_model_access(self, sandbox: Sandbox) -> None:
        actor = self._actor
        access = actor._deps.model_access
        if access is None:
            return
        try:
            await access.grant(session_id=actor.id, user_id=actor.record.user_id, sandbox=sandbox)
        except Exception as exc:  # the agent works without it; the next turn tries again
            actor._log(f"model proxy not given to the sandbox: {type(exc).__name__}")

    async def release_engine(self, *, forget: bool = False) -> None:
        """Stop an in-sandbox engine before its sandbox pauses or goes (``forget``: deleted)."""
        actor = self._actor
        deps = actor._deps
        # On delete every engine forgets the session: whatever it minted for it
        # (model-proxy tokens, on any replica) dies with it.
        engines = [*deps.engines.values()] if forget else [actor._engine]
        if deps.model_access is not None:
            engines.append(deps.model_access)
        for engine in engines:
            method = getattr(engine, "forget" if forget else "release", None)
            if method is None:
                continue
            try:
                await method(actor.id)
            except Exception as exc:
                actor._log(f"stopping engine failed: {type(exc).__name__}")
