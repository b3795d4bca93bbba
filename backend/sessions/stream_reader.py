"""``StreamReader``: one ``XREAD BLOCK`` over every stream this replica follows.

A replica used to hold one blocking read (and one Redis connection) per followed
session: 200 streaming sessions cost 200 connections and a round trip per event
each. Here one task reads all of them in one command, from each stream's own
cursor, and hands each stream's entries to its subscriber. A subscriber added
while the read is blocked is taken in at once: ``follow`` appends to this
replica's wake-up stream, which the read also watches, so the read returns and
is re-armed with the new set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import redis.exceptions as redis_errors

log = logging.getLogger("agent_tui.sessions")


def entry_seq(entry_id: bytes | str) -> int:
    """The seq of a stream entry id ``<seq>-0``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


class Subscriber(Protocol):
    """What ``StreamReader`` feeds (a session's ``RedisEventLog``)."""

    def wanted(self) -> bool:
        """False once nobody on this replica follows the stream: the reader drops it."""

    def deliver(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """New entries of the stream, in order."""

    def dropped(self, error: BaseException | None) -> None:
        """The reader no longer reads this stream (``error``: Redis failed)."""


class StreamReader:
    """Reads every followed stream of this replica with one blocking command."""

    def __init__(self, blocking: Any, short: Any, wake_key: str, block_ms: int) -> None:
        self._blocking = blocking
        self._short = short
        self._wake_key = wake_key
        self._wake_id = "0-0"
        self._block_ms = block_ms
        self._subs: dict[str, tuple[Subscriber, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._reading = False
        self.closing = False  # reads that fail now are being shut down, not broken

    async def follow(self, key: str, cursor: int, subscriber: Subscriber) -> None:
        """Deliver the entries of stream ``key`` after ``cursor`` to ``subscriber``."""
        self._subs[key] = (subscriber, cursor)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-reader")
        elif self._reading:
            # Redis down: the blocked read fails too and drops its subscribers.
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await self._short.xadd(self._wake_key, {"w": "1"}, maxlen=10, approximate=False)

    async def close(self) -> None:
        """Stop reading (server shutdown)."""
        self.closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            while True:
                for key, (sub, _) in tuple(self._subs.items()):
                    if not sub.wanted():
                        del self._subs[key]
                        sub.dropped(None)
                if not self._subs:
                    return
                streams = {key: f"{cursor}-0" for key, (_, cursor) in self._subs.items()}
                streams[self._wake_key] = self._wake_id
                self._reading = True
                try:
                    reply = await self._blocking.xread(streams, count=1000, block=self._block_ms)
                finally:
                    self._reading = False
                for raw_key, entries in reply or ():
                    key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                    if key == self._wake_key:
                        last = entries[-1][0]
                        self._wake_id = last.decode() if isinstance(last, bytes) else last
                        continue
                    held = self._subs.get(key)
                    if held is None or not entries:
                        continue
                    sub = held[0]
                    self._subs[key] = (sub, entry_seq(entries[-1][0]))
                    sub.deliver(entries)
        except asyncio.CancelledError:
            self._fail_all(None)
            raise
        except (redis_errors.RedisError, OSError) as exc:
            if not self.closing:
                log.warning("event streams: %s; followers resync", exc)
            self._fail_all(exc)
        finally:
            self._task = None

    def _fail_all(self, error: BaseException | None) -> None:
        subs, self._subs = self._subs, {}
        for sub, _ in subs.values():
            sub.dropped(error)
