"""``TurnObserver``: the object a turn's engine reports to (``observer=``).

The engines (the built-in loop, OpenCode) call it as the model streams and the
tools run; it turns those callbacks into the session's events, coalescing
partial text, and stores each finished step so a restarted server continues
from there. It writes nothing else: the actor created it for one turn and
passes it the means to publish (the actor's own ``_emit``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from backend import events as ev
from backend.agent.types import TurnResult
from backend.records import MessageRecord, ToolCall
from backend.sessions.permissions import PermissionGate
from backend.sessions.tool_output import ToolOutputStream
from backend.settings import Settings
from backend.store.base import Store

Emit = Callable[[str, dict[str, Any]], Awaitable[ev.Event]]


class _Partials:
    """One kind of partial event (text, thinking) of one message, coalesced: deltas
    that arrive while an event is being published (a Redis round trip in replicas
    mode) join the next event instead of queueing one task each."""

    def __init__(self, emit: Emit, event_type: str, message_id: str) -> None:
        self._emit = emit
        self._type = event_type
        self._message_id = message_id
        self._pending: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def add(self, text: str) -> None:
        self._pending.append(text)
        if self._task is None:
            self._task = asyncio.create_task(self._publish())

    async def _publish(self) -> None:
        try:
            while self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                await self._emit(
                    self._type, {"messageId": self._message_id, "content": text, "isPartial": True}
                )
        finally:
            self._task = None

    async def drain(self) -> None:
        """Publish everything pending now."""
        task = self._task
        if task is not None:
            # Shielded: an interrupt must not drop text already received.
            await asyncio.shield(task)
        if self._pending:
            await self._publish()


class TurnObserver:
    """Turns the agent loop's callbacks into events and persisted steps.

    Text deltas are published from a task that runs when the turn next waits
    for the network: deltas parsed from one read of the model's stream go out
    as one ``message.assistant`` fragment. A paced stream keeps one event per
    delta; a burst (a model faster than its readers, a loaded server) costs
    one event instead of dozens, with no added wait.
    """

    def __init__(
        self,
        assistant: MessageRecord,
        *,
        emit: Emit,
        store: Store,
        permissions: PermissionGate,
        settings: Settings,
    ) -> None:
        self._assistant = assistant
        self._emit = emit
        self._store = store
        self._permissions = permissions
        self._settings = settings
        self._text = _Partials(emit, ev.MESSAGE_ASSISTANT, assistant.id)
        self._thinking = _Partials(emit, ev.MESSAGE_THINKING, assistant.id)
        self._outputs: dict[str, ToolOutputStream] = {}

    async def on_text_delta(self, text: str) -> None:
        self._text.add(text)

    async def drain(self) -> None:
        """Publish pending text now: every other event comes after it."""
        await self._text.drain()
        await self._thinking.drain()

    # Extended thinking: partial events coalesced per network read, like text.

    async def on_thinking_delta(self, text: str) -> None:
        self._thinking.add(text)

    async def on_thinking_done(self, text: str) -> None:
        await self.drain()
        await self._emit(
            ev.MESSAGE_THINKING,
            {"messageId": self._assistant.id, "content": text, "isPartial": False},
        )

    async def on_text_done(self, text: str) -> None:
        await self.drain()
        await self._emit(
            ev.MESSAGE_ASSISTANT,
            {"messageId": self._assistant.id, "content": text, "isPartial": False},
        )

    async def on_tool_call(self, call: ToolCall) -> None:
        await self.drain()
        await self._emit_tool(call, "calling")

    async def check_permission(self, call: ToolCall) -> str | None:
        await self.drain()
        return await self._permissions.check(call, self._assistant.id)

    async def on_compacted(self, info: dict[str, Any]) -> None:
        await self.drain()
        await self._emit(ev.CONTEXT_COMPACTED, {"messageId": self._assistant.id, **info})

    async def on_tool_output(self, call: ToolCall, stream: str, text: str) -> None:
        output = self._outputs.get(call.id)
        if output is None:
            settings = self._settings
            output = self._outputs[call.id] = ToolOutputStream(
                self._emit,
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
        await self._emit_tool(call, "result", result=call.result, isError=call.is_error)

    async def _emit_tool(self, call: ToolCall, status: str, **extra: Any) -> None:
        """A ``message.tool`` event of ``call``: ``calling``, or its ``result``."""
        await self._emit(
            ev.MESSAGE_TOOL,
            {
                "messageId": self._assistant.id,
                "toolId": call.id,
                "toolName": call.name,
                "status": status,
                "arguments": call.arguments,
                **extra,
            },
        )

    async def on_step(self, result: TurnResult) -> None:
        # Persist the turn so far: a restarted server continues from here.
        await self._store.update_message(
            self._assistant.id,
            {
                "content": result.text,
                "tool_calls": result.tool_calls,
                "model_messages": list(result.model_messages),
            },
        )
