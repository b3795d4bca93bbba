"""One session's event stream: numbering, storage, a replay buffer and followers.

Every event gets the next ``seq``. Completed events are written to the store
before anyone sees them; partial text lives only in a bounded in-memory ring.
Followers each get a bounded queue: a follower that falls too far behind is
dropped with a ``stream.resync`` frame telling it where to resume, so a slow
reader never slows the turn or the other followers.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from backend.events import KEEPALIVE_FRAME, Event, resync_frame
from backend.records import EventRecord
from backend.schemas import iso
from backend.store.base import Store

_second_cache: list[Any] = [-1, ""]


def _timestamp(now: float) -> str:
    """ISO 8601 UTC with milliseconds, like ``schemas.iso``; the formatted second is
    cached, since a stream stamps thousands of events within one second."""
    second = int(now)
    if second != _second_cache[0]:
        _second_cache[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    return f"{_second_cache[1]}.{int((now - second) * 1000):03d}Z"


async def stored_events(
    store: Store, session_id: str, *, after_seq: int, before_seq: int | None = None
) -> AsyncIterator[Event]:
    """The session's stored (completed) events with ``after_seq < seq < before_seq``,
    oldest first, read from the store a page at a time."""
    cursor = after_seq
    while True:
        batch = await store.list_events(session_id, after_seq=cursor, limit=500)
        for record in batch:
            if before_seq is not None and record.seq >= before_seq:
                return
            yield Event(
                type=record.type,
                seq=record.seq,
                session_id=record.session_id,
                timestamp=iso(record.created_at) or "",
                data=record.data,
            )
            cursor = record.seq
        if len(batch) < 500:
            return


class _Lagged:
    """Queue sentinel: this follower overflowed and must resync."""


LAGGED = _Lagged()


class _Closing:
    """Queue sentinel: the server is shutting down; end the stream cleanly."""


CLOSING = _Closing()


class Follower:
    """A reader of the live tail; created by ``EventLog.subscribe``."""

    def __init__(self, log: EventLog, maxsize: int) -> None:
        self._log = log
        self.queue: asyncio.Queue[Event | _Lagged | _Closing] = asyncio.Queue(maxsize)
        self.lagged = False

    def offer(self, event: Event) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.offer_gap()

    def offer_gap(self) -> None:
        """This follower cannot get every event in order: it must resync."""
        if self.lagged:
            return
        self.lagged = True
        # Make room for the sentinel so the reader learns it must resync.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(LAGGED)

    def end(self) -> None:
        """Make the reader's stream end cleanly after what it already has."""
        while self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(CLOSING)

    def close(self) -> None:
        self._log._followers.discard(self)


class EventLog:
    """Numbering, storage, replay and fan-out of one session's events."""

    def __init__(
        self,
        session_id: str,
        *,
        store: Store,
        last_seq: int,
        buffer_size: int = 5000,
        follower_queue_size: int = 10_000,
    ) -> None:
        self.session_id = session_id
        self._store = store
        self.last_seq = last_seq
        self._buffer: collections.deque[Event] = collections.deque(maxlen=buffer_size)
        self._follower_queue_size = follower_queue_size
        self._followers: set[Follower] = set()
        self._publishing = asyncio.Lock()

    @property
    def follower_count(self) -> int:
        return len(self._followers)

    async def publish(self, type_: str, data: dict[str, Any]) -> Event:
        """Number, store (unless partial) and deliver one event.

        Serialised: storing a completed event awaits the database, and an event
        numbered later must not overtake it to the followers.
        """
        async with self._publishing:
            self.last_seq += 1
            now = time.time()  # one clock reading: a replayed event carries the same timestamp
            event = Event(
                type=type_,
                seq=self.last_seq,
                session_id=self.session_id,
                timestamp=_timestamp(now),
                data=data,
            )
            if not event.is_partial:
                created = datetime.fromtimestamp(int(now * 1000) / 1000, UTC)
                await self._store.append_events(
                    [EventRecord(self.session_id, event.seq, event.type, event.data, created)]
                )
            self._buffer.append(event)
            for follower in tuple(self._followers):
                follower.offer(event)
            return event

    def end_streams(self) -> None:
        """End every follower's stream cleanly (server shutdown)."""
        for follower in tuple(self._followers):
            follower.end()

    async def head(self) -> int:
        """The seq of the newest event (a live tail starts after it)."""
        return self.last_seq

    async def streamed_text(self, message_id: str) -> str:
        """The partial text of ``message_id`` still held in memory."""
        return "".join(
            str(e.data.get("content", ""))
            for e in self._buffer
            if e.is_partial and e.data.get("messageId") == message_id
        )

    async def sync(self, known_seq: int) -> None:
        """Take over the numbering after another process (replicas mode only)."""

    async def ready(self, follower: Follower) -> None:
        """Wait until ``follower`` is sure to get every event from now on (at once here)."""

    def subscribe(self) -> Follower:
        """A follower of events published from now on."""
        follower = Follower(self, self._follower_queue_size)
        self._followers.add(follower)
        return follower

    def buffered_after(self, after_seq: int) -> tuple[int | None, list[Event]]:
        """(first seq held in memory or None, buffered events with seq > after_seq)."""
        if not self._buffer:
            return None, []
        first = self._buffer[0].seq
        if after_seq >= self._buffer[-1].seq:
            return first, []
        start = max(0, after_seq + 1 - first)
        return first, [e for i, e in enumerate(self._buffer) if i >= start]

    async def replay(self, after_seq: int) -> AsyncIterator[Event]:
        """Events with seq > after_seq that already happened: from the store for the
        part older than the memory buffer, then from the buffer."""
        first, buffered = self.buffered_after(after_seq)
        cursor = after_seq
        if first is None or after_seq + 1 < first:
            async for event in stored_events(
                self._store, self.session_id, after_seq=cursor, before_seq=first
            ):
                yield event
                cursor = event.seq
            # The buffer may have moved on while we read the store.
            _, buffered = self.buffered_after(cursor)
        for event in buffered:
            if event.seq > cursor:
                yield event
                cursor = event.seq

    async def frames(
        self,
        after_seq: int | None,
        *,
        keepalive: float,
        until: tuple[str, ...] = (),
        follower: Follower | None = None,
    ) -> AsyncIterator[bytes]:
        """SSE frames: the replay after ``after_seq``, then the live tail.

        Stops after an event whose type is in ``until`` (when given). Pass a
        ``follower`` subscribed earlier to be sure to see events published
        between the subscription and this call. ``after_seq`` None: the live tail only.
        """
        follower = follower or self.subscribe()
        last = after_seq or 0
        try:
            await self.ready(follower)
            if after_seq is None:
                after_seq = await self.head()
            last = after_seq
            async for event in self.replay(after_seq):
                yield event.frame()
                last = event.seq
                if event.type in until:
                    return
            while True:
                try:
                    async with asyncio.timeout(keepalive):
                        item = await follower.queue.get()
                except TimeoutError:
                    yield KEEPALIVE_FRAME
                    continue
                if isinstance(item, _Lagged):
                    yield resync_frame(last)
                    return
                if isinstance(item, _Closing):
                    return
                if item.seq <= last:
                    continue
                # Whatever else is already queued goes out in the same write: under
                # load, one send per batch instead of one per event.
                chunk = [item.frame()]
                last = item.seq
                ended = item.type in until
                while not ended and not follower.queue.empty():
                    more = follower.queue.get_nowait()
                    if not isinstance(more, Event):
                        follower.queue.put_nowait(more)  # a sentinel: handled next round
                        break
                    if more.seq <= last:
                        continue
                    chunk.append(more.frame())
                    last = more.seq
                    ended = more.type in until
                yield b"".join(chunk)
                if ended:
                    return
        finally:
            follower.close()
