"""Reading the contract's SSE streams: frames to ``Event``s, and a follower that reconnects.

Three streams use this: a turn (``POST .../messages``), session creation with
progress (``POST /v1/sessions`` with ``Accept: text/event-stream``) and a
session's event log (``GET .../events``). Only the last reconnects on its own;
a turn whose stream drops is picked up from the event log by ``SessionHandle``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import EventSource

from agent_tui.client.errors import INVALID_RESPONSE, AgentApiError
from backend.events import STREAM_RESYNC, TURN_END_TYPES, Event

if TYPE_CHECKING:
    from agent_tui.client.client import AgentClient

# Nothing of a turn follows these (a failed turn's ``error`` is followed by
# ``session.idle``): stop reading there rather than wait for the server to close.
FINAL_TYPES = frozenset(TURN_END_TYPES)

RECONNECT_INITIAL_DELAY = 0.2
RECONNECT_MAX_DELAY = 5.0


class ConnectionState(StrEnum):
    """The state of a ``follow_events`` stream, reported through ``on_state``."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass(frozen=True)
class Resync:
    """The server dropped this follower: reconnect after ``last_seq``."""

    last_seq: int


async def call_back(callback: Callable[..., Any] | None, *args: Any) -> None:
    """Call a callback that may be a plain function or a coroutine function."""
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


async def iter_frames(response: httpx.Response) -> AsyncIterator[Event | Resync]:
    """The events (and resync notices) of one open SSE response, in arrival order.

    Keepalive comments are consumed by the parser; they still count as bytes for
    the read timeout, which is what makes the timeout a heartbeat watchdog.
    """
    async for sse in EventSource(response).aiter_sse():
        if not sse.data:
            continue
        try:
            payload = json.loads(sse.data)
            if sse.event == STREAM_RESYNC or payload.get("type") == STREAM_RESYNC:
                yield Resync(int(payload["data"]["lastSeq"]))
                continue
            event = Event.from_json(payload)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AgentApiError(
                INVALID_RESPONSE,
                f"The server sent an event the client cannot read: {sse.data[:200]!r}",
                details={"event": sse.event, "id": sse.id},
            ) from exc
        yield event


def _retriable(exc: AgentApiError) -> bool:
    """Worth reconnecting: no answer at all, a server-side failure, or a rate limit."""
    return exc.status == 0 or exc.status >= 500 or exc.status in (408, 429)


async def follow(
    client: AgentClient,
    session_id: str,
    *,
    after: int | None,
    on_state: Callable[[ConnectionState], Any] | None,
    heartbeat_timeout: float,
) -> AsyncIterator[Event]:
    """Every event of the session after ``after``, once each and in order, forever.

    Reconnects with ``Last-Event-ID`` set to the last seq yielded, after a dropped
    connection, a server that closed the stream, ``heartbeat_timeout`` seconds
    without a byte, or a ``stream.resync`` notice. Backoff doubles from 0.2 s to
    5 s and starts over once a connection delivers an event. A 4xx other than
    408/429 (a bad key, an unknown session) is raised: retrying cannot fix it.
    """
    last = after
    delay = RECONNECT_INITIAL_DELAY
    state: ConnectionState | None = None

    async def report(new: ConnectionState) -> None:
        nonlocal state
        if new != state:
            state = new
            await call_back(on_state, new)

    path = f"/v1/sessions/{session_id}/events"
    try:
        while True:
            resync = False
            retry_after: float | None = None
            try:
                if last is None:
                    # Without Last-Event-ID the server sends only the live tail; pin
                    # "now" to a seq so a reconnect before the first event loses nothing.
                    last = (await client.get_session(session_id)).last_event_id
                async with client.open_stream(
                    "GET",
                    path,
                    headers={"Last-Event-ID": str(last)},
                    read_timeout=heartbeat_timeout,
                ) as response:
                    await report(ConnectionState.CONNECTED)
                    async with aclosing(iter_frames(response)) as frames:
                        async for item in frames:
                            if isinstance(item, Resync):
                                # Resume from what we yielded (``last``), which is what
                                # the notice's lastSeq should say too.
                                resync = True
                                break
                            if item.seq <= last:
                                continue  # replayed overlap after a reconnect
                            last = item.seq
                            delay = RECONNECT_INITIAL_DELAY
                            yield item
            except AgentApiError as exc:
                if not _retriable(exc):
                    raise
                retry_after = exc.retry_after
            except httpx.TransportError:
                pass  # dropped, refused, or the heartbeat watchdog (ReadTimeout)
            await report(ConnectionState.RECONNECTING)
            if resync:
                continue  # the server asked for it: no reason to wait
            await asyncio.sleep(max(delay, retry_after or 0.0))
            delay = min(delay * 2, RECONNECT_MAX_DELAY)
    finally:
        await report(ConnectionState.CLOSED)
