"""``SessionTurns``: what happens inside a session's turns, from start to end.

A turn stores the user's message, runs the engine's model/tool loop with a
``TurnObserver`` and ends, whatever happens, with the assistant message
finished and stored, its usage counted, failures as ``error`` events and the
session back to ``idle``. Also here: resuming a turn cut by a restart while it
waited for a permission answer, ending a turn lost with its replica, and
compacting the model's context between turns.

A part of ``SessionActor``: the actor decides when a turn starts (in its
mailbox order) and owns the turn's task and lease; these methods run the turn
and write the session only through the actor's ``_save``, ``_emit`` and
``_set_status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from backend import events as ev
from backend.agent.types import ModelError, TurnResult
from backend.errors import ModelFailed, SessionBusy, StoreUnavailable
from backend.records import IDLE, RUNNING, MessageRecord, UsageRecord, new_id, utcnow
from backend.sessions.turn_observer import TurnObserver

if TYPE_CHECKING:
    from backend.sessions.actor import SessionActor

# The stop reason of a turn whose replica died (or shut down) before it ended.
STOP_LOST = "lost"

log = logging.getLogger("agent_tui.sessions")


class SessionTurns:
    """Runs and ends the turns of one session."""

    def __init__(self, actor: SessionActor) -> None:
        self._actor = actor
        self._store = actor._deps.store

    async def run(self, content: str, message_id: str) -> None:
        """A new turn: store ``content`` as the user's message and answer it."""
        actor = self._actor
        now = utcnow()
        user = MessageRecord(
            id=new_id(),
            session_id=actor.id,
            role="user",
            content=content,
            created_at=now,
            model_messages=[{"role": "user", "content": [{"type": "text", "text": content}]}],
        )
        assistant = MessageRecord(
            id=message_id, session_id=actor.id, role="assistant", content="", created_at=now
        )

        async def call(observer: TurnObserver) -> TurnResult:
            history = await self._history()
            await self._store.add_message(user)
            await self._store.add_message(assistant)
            await actor._save(message_count=actor.record.message_count + 2)
            await actor._usage("message.sent", 1)
            await actor._emit(ev.MESSAGE_USER, {"messageId": user.id, "content": content})
            return await actor._engine.run_turn(
                history=history, user_content=content, observer=observer, **self._engine_args()
            )

        await self._drive(assistant, call)

    def _engine_args(self) -> dict[str, Any]:
        """What a new and a resumed turn alike pass the engine from the session."""
        actor = self._actor
        return {
            "system_prompt": actor.record.system_prompt,
            "model": actor.record.model,
            "sandbox": actor._box.current,
            "thinking": bool(actor.record.options.get("thinking")),
        }

    async def resume(self, assistant: MessageRecord, history: list[dict[str, Any]]) -> None:
        """Go on with ``assistant``'s turn, cut after its last stored round."""
        actor = self._actor
        partial = TurnResult(
            stop_reason="tool_use",
            text=assistant.content,
            tool_calls=assistant.tool_calls,
            model_messages=assistant.model_messages,
        )
        await self._drive(
            assistant,
            lambda observer: actor._engine.resume_turn(
                history=history, partial=partial, observer=observer, **self._engine_args()
            ),
        )

    async def cut_turn(
        self, message_id: str, tool_use_id: str
    ) -> tuple[MessageRecord, list[dict[str, Any]]] | None:
        """The turn to resume after ``tool_use_id``'s answer, with the history before
        it, when ``message_id``'s last round was cut while that call waited; else None."""
        actor = self._actor
        if getattr(actor._engine, "resume_turn", None) is None:
            return None  # OpenCode keeps its own turn state: a cut turn there is over
        messages = await self._store.list_messages(actor.id)
        if not messages or messages[-1].id != message_id:
            return None  # a later turn ran meanwhile: that request's turn is over
        assistant = messages[-1]
        if not any(c.id == tool_use_id and c.is_error for c in assistant.tool_calls):
            return None
        history = [m for message in messages[:-1] for m in message.model_messages]
        return assistant, history

    async def _drive(
        self,
        assistant: MessageRecord,
        call: Callable[[TurnObserver], Awaitable[TurnResult]],
    ) -> None:
        """Run one turn's model/tool loop (``call``) and end it, whatever happens: the
        message is finished and stored, failures become ``error`` events and the
        session goes back to idle (the actor then frees the lease)."""
        actor = self._actor
        observer = TurnObserver(
            assistant,
            emit=actor._emit,
            store=self._store,
            permissions=actor.permissions,
            settings=actor._deps.settings,
        )
        try:
            try:
                result = await call(observer)
            except ModelError as exc:
                await observer.drain()
                if exc.partial is not None:
                    await observer.on_step(exc.partial)
                await self._finish(assistant, exc.partial, stop_reason="error")
                await actor._emit(
                    ev.ERROR, {"code": exc.code, "message": exc.message, "details": exc.details}
                )
                actor._log(f"turn failed: {exc.code} {exc.message}")
            else:
                task = asyncio.current_task()
                if result.stop_reason == "interrupted" and task is not None and task.cancelling():
                    # The loop absorbed the interrupt; clear it so later awaits run normally.
                    task.uncancel()
                await observer.drain()
                await self._finish(assistant, result, stop_reason=result.stop_reason)
        except asyncio.CancelledError:
            # Cancelled outside the agent loop (terminate, shutdown): nothing more to say.
            raise
        except StoreUnavailable as exc:
            actor._log(f"turn failed: database unavailable: {exc.message}")
            with contextlib.suppress(Exception):
                await actor._emit(ev.ERROR, exc.body()["error"])
        except Exception as exc:
            log.exception("turn failed in session %s", actor.id)
            actor._log(f"turn failed: internal error: {type(exc).__name__}")
            with contextlib.suppress(Exception):
                await actor._emit(
                    ev.ERROR,
                    {
                        "code": "INTERNAL_ERROR",
                        "message": "The turn failed unexpectedly",
                        "details": {},
                    },
                )
        finally:
            if actor.record.status == RUNNING and not actor._owner.lost:
                with contextlib.suppress(Exception):
                    await actor._set_status(IDLE, ev.SESSION_IDLE)

    async def _history(self) -> list[dict[str, Any]]:
        history: list[dict[str, Any]] = []
        for message in await self._store.list_messages(self._actor.id):
            history.extend(message.model_messages)
        # Stored as it happened; the agent loop repairs what it sends (a crash between a
        # tool_use and its result leaves one unanswered).
        return history

    async def _finish(
        self, assistant: MessageRecord, result: TurnResult | None, *, stop_reason: str
    ) -> None:
        actor = self._actor
        if actor._owner.lost:
            # Another replica ends this turn (as lost); write nothing more.
            raise SessionBusy(
                "The session moved to another server", details={"sessionId": actor.id}
            )
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
        await actor._save(
            input_tokens=actor.record.input_tokens
            + usage.input_tokens
            + usage.cache_creation_tokens,
            output_tokens=actor.record.output_tokens + usage.output_tokens,
            cache_read_tokens=actor.record.cache_read_tokens + usage.cache_read_tokens,
            last_activity_at=utcnow(),
        )
        records = [
            UsageRecord(new_id(), actor.record.user_id, kind, qty, utcnow(), actor.id)
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
            await actor._emit(
                ev.MESSAGE_COMPLETE,
                {
                    "messageId": assistant.id,
                    "role": "assistant",
                    "content": assistant.content,
                    "stopReason": stop_reason,
                    "usage": assistant.usage,
                },
            )
        actor._log(f"turn {assistant.id} ended: {stop_reason}")

    async def end_lost(self) -> None:
        """Replicas mode: end the turn a dead replica left running (stopReason ``lost``)."""
        actor = self._actor
        messages = await self._store.list_messages(actor.id, limit=2)
        assistant = next(
            (m for m in reversed(messages) if m.role == "assistant" and m.stop_reason is None),
            None,
        )
        if assistant is not None:
            # Text streamed since the last stored step is only in the event stream.
            streamed = await actor.events.streamed_text(assistant.id)
            if len(streamed) > len(assistant.content):
                assistant.content = streamed
            await self._store.update_message(
                assistant.id, {"stop_reason": STOP_LOST, "content": assistant.content}
            )
            await actor._emit(
                ev.MESSAGE_COMPLETE,
                {
                    "messageId": assistant.id,
                    "role": "assistant",
                    "content": assistant.content,
                    "stopReason": STOP_LOST,
                    "usage": assistant.usage,
                },
            )
        await actor._set_status(IDLE, ev.SESSION_IDLE)
        actor._log("the turn was lost with its server; ended it")

    async def compact(self) -> dict[str, Any] | None:
        """Compact the model's context now; the ``context.compacted`` data, or None
        when there was too little to compact. The transcript stays."""
        actor = self._actor
        messages = await self._store.list_messages(actor.id)
        if not messages:
            return None
        history = [m for message in messages for m in message.model_messages]
        try:
            marker = await actor._deps.agent.compact(
                history=history,
                system_prompt=actor.record.system_prompt,
                model=actor.record.model,
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
        await actor._emit(ev.CONTEXT_COMPACTED, data)
        actor._log(f"context compacted on demand: {before} -> {after} tokens")
        return data
