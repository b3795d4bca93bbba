"""``StreamWriter``: every session's ``XADD`` on this replica, one pipeline per round.

Each event of a running session is one ``XADD <seq>-0`` to its Redis stream.
Sent one by one, 200 streaming sessions make thousands of round trips a second
and queue for the short-command pool's connections (a queue that reached its
5 s timeout under the issue's benchmark). Here appends wait in one list; a
single task sends all that arrived since its last round as one pipeline
(``transaction=False``) and hands each caller its own reply, so that:

- per-session order holds: a session publishes one event at a time (its
  ``EventLog`` lock), so its entries never share a pipeline out of order;
- the fence holds: a stale runner's ``XADD`` still fails on its own
  ("equal or smaller" id), as an exception for that caller only
  (``raise_on_error=False``), without failing the other sessions' appends;
- a lost connection fails every append of the round (``RedisUnavailable`` upstream).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class _Append:
    key: str
    entry_id: str
    payload: str | bytes
    maxlen: int
    expire: int | None
    done: asyncio.Future[None]


class StreamWriter:
    """Batches ``XADD`` (and ``EXPIRE``) of all sessions into one pipeline per round."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._queue: list[_Append] = []
        self._task: asyncio.Task[None] | None = None

    async def append(
        self, key: str, seq: int, payload: str | bytes, *, maxlen: int, expire: int | None = None
    ) -> None:
        """Append entry ``<seq>-0`` to stream ``key``, trimmed to about ``maxlen``
        entries (then set its TTL when given).

        Raises the command's own error (``ResponseError`` for an id not above the
        stream's last) or the connection's."""
        done = asyncio.get_running_loop().create_future()
        self._queue.append(_Append(key, f"{seq}-0", payload, maxlen, expire, done))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="stream-writer")
        await done

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch)
        finally:
            self._task = None

    async def _send(self, batch: list[_Append]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for item in batch:
                    pipe.xadd(
                        item.key,
                        {"e": item.payload},
                        id=item.entry_id,
                        maxlen=item.maxlen,
                        approximate=True,
                    )
                    if item.expire is not None:
                        pipe.expire(item.key, item.expire)
                replies = iter(await pipe.execute(raise_on_error=False))
        except Exception as exc:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
            return
        except BaseException as exc:  # cancelled (shutdown): the callers must not hang
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(ConnectionError(f"stream writer stopped: {exc!r}"))
            raise
        for item in batch:
            reply = next(replies)
            if item.expire is not None:
                next(replies)
            if item.done.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                item.done.set_exception(reply)
            else:
                item.done.set_result(None)
