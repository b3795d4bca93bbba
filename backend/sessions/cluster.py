"""``Cluster``: what replicas share, opened once at start-up when ``REDIS_URL`` is set.

- the lease table in PostgreSQL (``backend/sessions/lease.py``): one runner per session;
- each session's event stream in Redis (``backend/sessions/redis_events.py``);
- a command channel per replica over Redis pub/sub: interrupt and delete are
  forwarded to the replica holding the session's lease, which answers on a
  reply list that the sender waits on with ``BLPOP``.

Redis errors become ``ServiceUnavailable`` (503 with ``Retry-After``); every call
opens a fresh connection when the last one died, so a Redis that comes back is
used again without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as redis_errors

from backend.errors import ServiceUnavailable
from backend.sessions.lease import Leases, LeaseStore
from backend.sessions.stream_reader import StreamReader
from backend.sessions.stream_writer import StreamWriter
from backend.settings import Settings

log = logging.getLogger("agent_tui.sessions")

# Seconds: a lease lives this long without renewal; a dead runner is noticed
# within LEASE_TTL + REAP_INTERVAL (the issue asks for 10 s).
LEASE_TTL = 5.0
REAP_INTERVAL = 1.0
# How long a forwarded command may take (an interrupt waits for the turn to end).
COMMAND_TIMEOUT = 15.0
# Seconds a blocking stream read waits before it checks whether anyone still listens.
READ_BLOCK_MS = 2000

# Connections per replica: short commands share a few; blocking reads (the one
# stream reader, BLPOP of forwarded commands, the command channel) hold one each.
SHORT_CONNECTIONS = 64
BLOCKING_CONNECTIONS = 10_000

REDIS_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)

CommandHandler = Callable[[str, str], Awaitable[dict[str, Any]]]


class RedisUnavailable(ServiceUnavailable):
    """Redis cannot be reached: routes that need it answer 503 until it returns."""

    default_message = "Redis is unreachable; retry shortly"


@contextlib.asynccontextmanager
async def redis_call(what: str) -> AsyncIterator[None]:
    """Turn Redis connection failures into ``RedisUnavailable``."""
    try:
        yield
    except REDIS_DOWN as exc:
        log.warning("Redis unavailable during %s: %s: %s", what, type(exc).__name__, exc)
        raise RedisUnavailable() from exc


class Cluster:
    """The shared parts of replicas mode. ``start()`` it after the store is open."""

    def __init__(self, settings: Settings, store: LeaseStore) -> None:
        self.settings = settings
        self.replica_id = settings.replica_id
        self.prefix = settings.rate_limit_prefix
        self.leases = Leases(store, self.replica_id, LEASE_TTL)
        common: dict[str, Any] = {"socket_connect_timeout": 2.0, "health_check_interval": 10}
        # Short commands (XADD, XRANGE, PUBLISH) share a bounded pool; a command
        # that finds every connection busy waits for one (up to 5 s) ...
        self.redis = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=SHORT_CONNECTIONS,
                timeout=5.0,
                socket_timeout=5.0,
                **common,
            )
        )
        # ... blocking reads (XREAD BLOCK, BLPOP, SUBSCRIBE) hold a connection each:
        # one per session followed on this replica, so no small bound here.
        self.blocking = aioredis.Redis.from_url(
            settings.redis_url,
            max_connections=BLOCKING_CONNECTIONS,
            socket_timeout=READ_BLOCK_MS / 1000 + 10,
            **common,
        )
        # Every session's XADDs share one pipeline per round, and one blocking read
        # serves every stream followed here (stream_writer.py, stream_reader.py).
        self.writer = StreamWriter(self.redis)
        self.reader = StreamReader(
            self.blocking,
            self.redis,
            f"{self.prefix}:replica:{self.replica_id}:wake",
            READ_BLOCK_MS,
        )
        self._handler: CommandHandler | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._answering: set[asyncio.Task[None]] = set()
        self.closing = False  # readers that fail now are being shut down, not broken

    # ------------------------------------------------------------------ names

    def stream_key(self, session_id: str) -> str:
        """The Redis stream holding a session's events (entry id ``<seq>-0``)."""
        return f"{self.prefix}:session:{session_id}:events"

    def _channel(self, replica_id: str) -> str:
        return f"{self.prefix}:replica:{replica_id}:commands"

    # ------------------------------------------------------------------ life

    async def start(self, handler: CommandHandler) -> None:
        """Listen for commands sent to this replica (``handler(command, session_id)``)."""
        self._handler = handler
        self._listener = asyncio.create_task(self._listen(), name="cluster-commands")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self._listening.wait()

    async def close(self) -> None:
        self.closing = self.reader.closing = True
        await self.reader.close()
        await self.leases.close()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.redis.aclose()
        await self.blocking.aclose()

    async def ping(self) -> None:
        """Raise ``RedisUnavailable`` unless Redis answers."""
        async with redis_call("ping"):
            await self.redis.ping()

    # ------------------------------------------------------------------ commands

    async def send_command(self, replica_id: str, command: str, session_id: str) -> dict[str, Any]:
        """Run ``command`` on the session at ``replica_id`` and return its answer.

        Raises ``TimeoutError`` when no replica answers in time (it died: its
        lease expires and the reaper takes over)."""
        reply_key = f"{self.prefix}:reply:{uuid.uuid4().hex}"
        message = json.dumps({"command": command, "sessionId": session_id, "reply": reply_key})
        async with redis_call("send_command"):
            receivers = await self.redis.publish(self._channel(replica_id), message)
            if not receivers:
                raise TimeoutError(f"replica {replica_id} is not listening")
            answer = await self.blocking.blpop([reply_key], timeout=COMMAND_TIMEOUT)
        if answer is None:
            raise TimeoutError(f"replica {replica_id} did not answer {command}")
        return json.loads(answer[1])

    async def _listen(self) -> None:
        backoff = 0.2
        while True:
            pubsub = self.blocking.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel(self.replica_id))
                self._listening.set()
                backoff = 0.2
                while True:
                    message = await pubsub.get_message(timeout=READ_BLOCK_MS / 1000)
                    if message is not None and message.get("type") == "message":
                        task = asyncio.create_task(self._answer(message["data"]))
                        self._answering.add(task)
                        task.add_done_callback(self._answering.discard)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("command channel: %s: %s; reconnecting", type(exc).__name__, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _answer(self, raw: bytes) -> None:
        try:
            request = json.loads(raw)
        except ValueError:
            return
        assert self._handler is not None
        try:
            result = await self._handler(request["command"], request["sessionId"])
        except Exception as exc:
            log.warning("command %s failed: %s", request.get("command"), type(exc).__name__)
            result = {"error": type(exc).__name__}
        with contextlib.suppress(*REDIS_DOWN):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(request["reply"], json.dumps(result))
                pipe.expire(request["reply"], int(COMMAND_TIMEOUT) + 5)
                await pipe.execute()
