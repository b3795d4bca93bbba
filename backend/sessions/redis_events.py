"""``RedisEventLog``: a session's event stream shared by every replica (replicas mode).

The replica holding the session's lease numbers each event once and appends it
to a Redis stream with its seq as the entry id (``XADD key <seq>-0``). Redis
refuses an id not above the stream's last one, which also fences a runner that
lost its lease: its next event fails instead of forking the stream. Completed
events are written to PostgreSQL first, as in the single-process ``EventLog``,
so they outlive the stream (trimmed to ``MAXLEN``, expiring a week after the
last event).

Appends of all sessions go through the replica's ``StreamWriter`` (one pipeline
per round). The replica's ``StreamReader`` (one ``XREAD BLOCK`` over every
stream followed here) hands new entries to ``deliver``, which fans them out to
that replica's SSE followers through the same bounded queues and
``stream.resync`` rule as ``EventLog``. Replay after
``Last-Event-ID`` reads the stream (``XRANGE``), and PostgreSQL for what is
older than the stream's first entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.exceptions as redis_errors

from backend.errors import ApiError
from backend.events import Event
from backend.records import EventRecord
from backend.schemas import iso
from backend.sessions.cluster import Cluster, redis_call
from backend.sessions.eventlog import LAGGED, EventLog, Follower, _timestamp, stored_events
from backend.sessions.stream_reader import entry_seq
from backend.store.base import Store

log = logging.getLogger("agent_tui.sessions")

STREAM_TTL_SECONDS = 7 * 24 * 3600


class LeaseLost(ApiError):
    """This replica's turn lost the session's lease: another replica runs it now."""

    status, code, default_message = 409, "SESSION_BUSY", "The session moved to another replica"


_seq = entry_seq


@dataclass(frozen=True, slots=True)
class _StreamedEvent(Event):
    """An event read from the stream, with its JSON as stored: its SSE frame reuses
    it instead of encoding the event again for every follower."""

    raw: bytes = b""

    def frame(self) -> bytes:
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.seq, self.type.encode(), self.raw)


def _event(fields: dict[bytes, bytes]) -> Event:
    raw = fields[b"e"]
    data = json.loads(raw)
    return _StreamedEvent(
        type=data["type"],
        seq=int(data["seq"]),
        session_id=data["sessionId"],
        timestamp=data["timestamp"],
        data=data.get("data") or {},
        raw=raw,
    )


class RedisEventLog(EventLog):
    """``EventLog`` over a Redis stream; same interface for the actor and the routes."""

    def __init__(
        self,
        session_id: str,
        *,
        store: Store,
        cluster: Cluster,
        last_seq: int,
        buffer_size: int = 5000,
        follower_queue_size: int = 10_000,
    ) -> None:
        super().__init__(
            session_id,
            store=store,
            last_seq=last_seq,
            buffer_size=1,
            follower_queue_size=follower_queue_size,
        )
        self._cluster = cluster
        self._key = cluster.stream_key(session_id)
        self._maxlen = max(buffer_size, 1000)
        self._starting: asyncio.Task[None] | None = None
        self._cursor = 0  # the last entry the stream reader handed over
        # The last seq this replica's publish offered its followers directly, and the
        # last seq its followers were offered by either path.
        self._delivered = 0
        self._offered = 0
        self._reader_started: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ writing (the runner)

    async def publish(self, type_: str, data: dict[str, Any]) -> Event:
        """Number, store (unless partial) and append one event to the stream."""
        async with self._publishing:
            seq = self.last_seq + 1
            now = time.time()
            event = Event(
                type=type_,
                seq=seq,
                session_id=self.session_id,
                timestamp=_timestamp(now),
                data=data,
            )
            if not event.is_partial:
                created = datetime.fromtimestamp(int(now * 1000) / 1000, UTC)
                await self._store.append_events(
                    [EventRecord(self.session_id, seq, event.type, event.data, created)]
                )
            self.last_seq = seq
            payload = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False)
            event = _StreamedEvent(
                type=type_,
                seq=seq,
                session_id=self.session_id,
                timestamp=event.timestamp,
                data=data,
                raw=payload.encode(),
            )
            try:
                async with redis_call("publish"):
                    await self._cluster.writer.append(
                        self._key,
                        seq,
                        event.raw,
                        maxlen=self._maxlen,
                        expire=None if event.is_partial else STREAM_TTL_SECONDS,
                    )
            except redis_errors.ResponseError as exc:
                if "equal or smaller" in str(exc):
                    raise LeaseLost(details={"sessionId": self.session_id, "seq": seq}) from exc
                raise
            # This replica's followers get it at once (its reader then skips it), unless
            # the reader has yet to deliver earlier events: then it goes in order that way.
            if not self._followers or self._offered >= seq - 1:
                self._delivered = self._offered = seq
                for follower in tuple(self._followers):
                    follower.offer(event)
            return event

    def _xadd(self, client: Any, seq: int, payload: str) -> Any:
        return client.xadd(
            self._key, {"e": payload}, id=f"{seq}-0", maxlen=self._maxlen, approximate=True
        )

    async def sync(self, known_seq: int) -> None:
        """Take over numbering (just after acquiring the lease): continue after the
        highest of the stream's last entry, the last stored event and ``known_seq``,
        and copy into the stream the stored events it lacks (a runner that died
        between storing an event and appending it), so both replays agree."""
        async with redis_call("sync"):
            head = await self._stream_head()
            stored = await self._store.last_event_seq(self.session_id)  # type: ignore[attr-defined]
            if head and stored > head:
                missing = await self._store.list_events(
                    self.session_id, after_seq=head, limit=10_000
                )
                for record in missing:
                    event = Event(
                        type=record.type,
                        seq=record.seq,
                        session_id=record.session_id,
                        timestamp=iso(record.created_at) or "",
                        data=record.data,
                    )
                    payload = json.dumps(event.to_json(), separators=(",", ":"))
                    with contextlib.suppress(redis_errors.ResponseError):
                        await self._xadd(self._cluster.redis, record.seq, payload)
        self.last_seq = max(head, stored, known_seq)

    async def streamed_text(self, message_id: str) -> str:
        """The text of ``message_id`` that followers saw, from the stream's partial
        events (what a dead runner had not stored yet)."""
        pieces: list[str] = []
        async with redis_call("streamed_text"):
            entries = await self._cluster.redis.xrevrange(self._key, "+", "-", count=self._maxlen)
        for _entry_id, fields in entries:
            event = _event(fields)
            if event.type == "session.running":
                break
            data = event.data
            if event.is_partial and data.get("messageId") == message_id:
                pieces.append(str(data.get("content", "")))
        return "".join(reversed(pieces))

    # ------------------------------------------------------------------ reading (any replica)

    async def _stream_head(self) -> int:
        last = await self._cluster.redis.xrevrange(self._key, "+", "-", count=1)
        return _seq(last[0][0]) if last else 0

    async def head(self) -> int:
        """The seq of the newest event (live tail starts after it)."""
        async with redis_call("head"):
            return max(await self._stream_head(), self.last_seq)

    def subscribe(self) -> Follower:
        follower = super().subscribe()
        if self._reader_started is None:
            self._reader_started = asyncio.get_running_loop().create_future()
            self._starting = asyncio.create_task(
                self._follow(self._reader_started), name=f"follow-{self.session_id}"
            )
        return follower

    async def ready(self, follower: Follower) -> None:
        """Wait until this replica's reader has fixed its position, so that every
        event after it reaches ``follower``; ``RedisUnavailable`` when Redis is down."""
        started = self._reader_started
        if started is not None:
            try:
                await asyncio.shield(started)
            except BaseException:
                follower.close()
                raise

    async def _follow(self, started: asyncio.Future[None]) -> None:
        """Fix the position (the stream's head) and join this replica's stream reader."""
        try:
            async with redis_call("follow"):
                cursor = await self._stream_head()
        except BaseException as exc:
            if self._reader_started is started:
                self._reader_started = None
            started.set_exception(exc)
            started.exception()  # retrieved: the waiters re-raise it
            return
        self._offered = max(self._offered, cursor)  # what is older comes by replay
        self._cursor = cursor
        started.set_result(None)
        await self._cluster.reader.follow(self._key, cursor, self)

    # The stream reader's side (``stream_reader.Subscriber``).

    def wanted(self) -> bool:
        """Anyone on this replica still follows this session."""
        return bool(self._followers)

    def dropped(self, error: BaseException | None) -> None:
        """The reader stopped reading this stream; on an error every follower resyncs."""
        self._reader_started = None
        if error is None:
            return
        for follower in tuple(self._followers):
            follower.lagged = True
            with contextlib.suppress(asyncio.QueueFull):
                follower.queue.put_nowait(LAGGED)

    def deliver(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Offer the stream's new entries to this replica's followers, in order."""
        for entry_id, fields in entries:
            seq = _seq(entry_id)
            if seq <= self._delivered:
                self._cursor = seq  # published here and already offered
                continue
            event = _event(fields)
            if seq != self._cursor + 1 and self._cursor:
                # Trimmed past us, or renumbered after a lost stream: whoever
                # relies on continuity must replay from where they are.
                for follower in tuple(self._followers):
                    follower.offer_gap()
            self._cursor = seq
            self._offered = max(self._offered, seq)
            for follower in tuple(self._followers):
                follower.offer(event)

    async def replay(self, after_seq: int) -> AsyncIterator[Event]:
        """Events with seq > after_seq that already happened: PostgreSQL for what is
        older than the stream's first entry, then the stream, then stored events the
        stream lacks at its end."""
        cursor = after_seq
        async with redis_call("replay"):
            first = await self._cluster.redis.xrange(self._key, "-", "+", count=1)
        first_seq = _seq(first[0][0]) if first else None
        if first_seq is None or first_seq > cursor + 1:
            async for event in stored_events(
                self._store, self.session_id, after_seq=cursor, before_seq=first_seq
            ):
                yield event
                cursor = event.seq
        while True:
            async with redis_call("replay"):
                entries = await self._cluster.redis.xrange(
                    self._key, f"({cursor}-0", "+", count=1000
                )
            for entry_id, fields in entries:
                seq = _seq(entry_id)
                if seq > cursor:
                    yield _event(fields)
                    cursor = seq
            if len(entries) < 1000:
                break
        # Stored events past the stream's end: a runner stored them, then lost Redis
        # before appending them (the next lease holder copies them into the stream).
        async for event in stored_events(self._store, self.session_id, after_seq=cursor):
            yield event
