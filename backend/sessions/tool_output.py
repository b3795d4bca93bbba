"""``ToolOutputStream``: a running command's output as paced ``tool.output`` events.

A command can write megabytes in a second; its readers need the tail, soon. So
the output of one command is coalesced: the first write goes out at once, later
ones at most ``rate`` times a second (per stream), and after ``max_bytes`` in all
the stream says it was truncated and stops. The full output is kept elsewhere:
in the tool result the model gets (``tool_output_max_bytes``, head and tail).
``tool.output`` events are partial: replayed from memory, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from backend import events as ev

Emit = Callable[[str, dict[str, Any]], Awaitable[Any]]


class ToolOutputStream:
    """One command's output; ``add`` as it is written, ``close`` when it ends."""

    def __init__(
        self, emit: Emit, *, message_id: str, tool_id: str, rate: float, max_bytes: int
    ) -> None:
        self._emit = emit
        self._base = {"messageId": message_id, "toolId": tool_id}
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._max_bytes = max_bytes
        self._sent = 0
        self._last = float("-inf")
        self._pending: list[tuple[str, str]] = []
        self._timer: asyncio.Task[None] | None = None
        self._truncated = False

    async def add(self, stream: str, text: str) -> None:
        """Output written by the command (``stream`` is ``stdout`` or ``stderr``)."""
        if self._truncated or not text:
            return
        self._pending.append((stream, text))
        if self._timer is not None:
            return  # a flush is already scheduled
        wait = self._last + self._interval - time.monotonic()
        if wait <= 0:
            await self._flush()
        else:
            self._timer = asyncio.create_task(self._flush_later(wait))

    async def _flush_later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        self._timer = None  # from here on, close() lets this flush finish
        await self._flush()

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending or self._truncated:
            return
        self._last = time.monotonic()
        # Consecutive writes to one stream become one event.
        merged: list[list[str]] = []
        for stream, text in pending:
            if merged and merged[-1][0] == stream:
                merged[-1][1] += text
            else:
                merged.append([stream, text])
        for stream, text in merged:
            room = self._max_bytes - self._sent
            data = text.encode("utf-8", "replace")
            if len(data) >= room:
                text = data[: max(0, room)].decode("utf-8", "ignore")
                self._truncated = True
            self._sent += len(text.encode("utf-8", "replace"))
            payload = {**self._base, "stream": stream, "text": text}
            if self._truncated:
                payload["truncated"] = True
            await self._emit(ev.TOOL_OUTPUT, payload)
            if self._truncated:
                return

    async def close(self) -> None:
        """The command ended: send what is pending, before the tool's result."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self._flush()
