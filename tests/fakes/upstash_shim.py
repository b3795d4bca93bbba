"""A local Upstash Redis: the Upstash REST protocol in front of a real redis-server.

Enough of the protocol for upstash-redis and upstash-ratelimit:

- ``POST /`` with a JSON command array answers ``{"result": ...}``;
  ``POST /pipeline`` (in order, not atomic) and ``POST /multi-exec`` (MULTI/EXEC)
  take an array of commands and answer an array of ``{"result"}``/``{"error"}``.
- ``Authorization: Bearer <token>`` (or ``?_token=``), else 401.
- With ``Upstash-Encoding: base64`` every string in a result is base64, except
  the literal ``OK``; integers and null pass through; arrays recursively.
- Failures answer 400 ``{"error": "ERR ..."}`` with Redis's own error code.
- ``#!lua flags=allow-key-locking`` (an Upstash-only flag that upstash-ratelimit
  1.2 puts on every script) is removed before the script reaches Redis, which
  rejects it; the SHA of the script as sent maps to the SHA of the one Redis
  holds, so ``SCRIPT LOAD`` and ``EVALSHA`` round-trip.
- ``/slow/{seconds}`` in front of any route sleeps that long before answering,
  to test deadlines: see ``slow_url``.

Not implemented: path-style commands (``GET /set/k/v``), ``Upstash-Sync-Token``,
and Upstash-only commands. Keys are not namespaced: tests isolate themselves
with a unique key prefix (the ``redis_prefix`` fixture).

``running_upstash_shim`` serves it with uvicorn on a random loopback port in a
background thread; the ``upstash_shim`` fixture does that once per session.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvicorn
from redis._parsers import _AsyncRESP2Parser
from redis.exceptions import RedisError, ResponseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["UpstashShim", "create_app", "running_upstash_shim", "slow_url", "upstash_shim"]

UPSTASH_ONLY_SCRIPT_FLAGS = frozenset({"allow-key-locking"})


class _RawErrorParser(_AsyncRESP2Parser):
    """RESP2 parser that keeps Redis error replies whole.

    redis-py strips the code (``ERR``, ``NOSCRIPT``, ...) off the errors it
    knows, but Upstash passes it through and callers match on it.
    """

    @classmethod
    def parse_error(cls, response: str) -> ResponseError:
        return ResponseError(response)


class CommandError(Exception):
    """A request the shim refuses before it reaches Redis; the message is the reply."""


def rewrite_script(script: str) -> str:
    """Remove Upstash-only flags from a Lua script's ``#!lua`` shebang line."""
    if not script.startswith("#!"):
        return script
    first_line, newline, body = script.partition("\n")
    words = []
    for word in first_line.split():
        if word.startswith("flags="):
            flags = [f for f in word[len("flags=") :].split(",") if f]
            kept = [f for f in flags if f not in UPSTASH_ONLY_SCRIPT_FLAGS]
            if not kept:
                # "#!lua" alone is valid and means: no flags.
                continue
            word = "flags=" + ",".join(kept)
        words.append(word)
    return " ".join(words) + newline + body


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class UpstashShim:
    """Translates Upstash REST commands to redis-py calls and Redis replies to JSON."""

    def __init__(self, redis_url: str, token: str) -> None:
        self.redis_url = redis_url
        self.token = token
        self._redis: aioredis.Redis | None = None
        # SHA1 of a script as the client sent it -> SHA1 of the script Redis holds.
        self._script_shas: dict[str, str] = {}

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("the shim is not started")
        return self._redis

    def _new_client(self, **kwargs: Any) -> aioredis.Redis:
        client = aioredis.Redis(**kwargs)
        # Raw replies: the Upstash client, not the shim, turns EXPIRE into a
        # bool and HGETALL into a dict, exactly as it does against Upstash.
        client.response_callbacks.clear()
        return client

    async def start(self) -> None:
        """Connect to Redis (RESP2, raw replies and errors) and check it answers."""
        pool = aioredis.ConnectionPool.from_url(
            self.redis_url,
            # redis-py 8 speaks RESP3 by default; Upstash's replies are RESP2 shaped.
            protocol=2,
            parser_class=_RawErrorParser,
        )
        self._redis = self._new_client(connection_pool=pool)
        await self._redis.execute_command("PING")

    async def stop(self) -> None:
        """Close the Redis connections."""
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
            self._redis = None

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the token, as a Bearer header or ``?_token=``."""
        header = request.headers.get("authorization", "")
        given = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        given = given or request.query_params.get("_token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    # -- commands --------------------------------------------------------

    def _prepare(self, command: Any) -> tuple[list[Any], str | None]:
        """Validate one command and rewrite scripts; also the SHA that SCRIPT LOAD
        should answer, when it is one."""
        if not isinstance(command, list) or not command:
            raise CommandError("ERR failed to parse command")
        args = [_as_redis_arg(arg) for arg in command]
        name = str(args[0]).upper()
        if name in ("EVAL", "EVAL_RO") and len(args) > 1:
            original = str(args[1])
            rewritten = rewrite_script(original)
            if rewritten != original:
                self._script_shas[_sha1(original)] = _sha1(rewritten)
                args[1] = rewritten
        elif name in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
            args[1] = self._script_shas.get(str(args[1]).lower(), args[1])
        elif name == "SCRIPT" and len(args) > 2:
            sub = str(args[1]).upper()
            if sub == "LOAD":
                original = str(args[2])
                rewritten = rewrite_script(original)
                self._script_shas[_sha1(original)] = _sha1(rewritten)
                args[2] = rewritten
                return args, _sha1(original)
            if sub == "EXISTS":
                args[2:] = [self._script_shas.get(str(a).lower(), a) for a in args[2:]]
        return args, None

    async def execute(self, command: Any) -> Any:
        """Run one command; raw reply, or raises ``ResponseError``/``CommandError``."""
        args, loaded_sha = self._prepare(command)
        reply = await self.redis.execute_command(*args)
        return loaded_sha.encode() if loaded_sha is not None else reply

    async def pipeline(self, commands: list[Any]) -> list[Any]:
        """Run commands in order, each on its own: one failure does not stop the rest."""
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append(await self.execute(command))
            except (ResponseError, CommandError) as exc:
                replies.append(exc)
        return replies

    async def multi_exec(self, commands: list[Any]) -> list[Any]:
        """Run commands in one MULTI/EXEC on one connection; runtime errors come inline."""
        prepared = [self._prepare(command) for command in commands]
        client = self._new_client(
            connection_pool=self.redis.connection_pool, single_connection_client=True
        )
        try:
            await client.execute_command("MULTI")
            try:
                for args, _ in prepared:
                    await client.execute_command(*args)
            except ResponseError:
                # A queue-time error: EXEC answers EXECABORT for the whole block.
                pass
            replies = await client.execute_command("EXEC")
        except BaseException:
            # Never hand a connection that may still be inside MULTI back to the pool.
            if client.connection is not None:
                await client.connection.disconnect()
            raise
        finally:
            await client.aclose()
        return [
            loaded.encode() if loaded is not None and not isinstance(reply, Exception) else reply
            for (_, loaded), reply in zip(prepared, replies, strict=True)
        ]


def _as_redis_arg(value: Any) -> Any:
    """JSON values as Redis arguments: redis-py refuses bool, None, lists and dicts."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _encode(reply: Any, b64: bool) -> Any:
    """A raw redis-py reply as Upstash puts it in JSON."""
    if isinstance(reply, bytes):
        if b64:
            return "OK" if reply == b"OK" else base64.b64encode(reply).decode("ascii")
        return reply.decode("utf-8", errors="replace")
    if isinstance(reply, list):
        return [_encode(item, b64) for item in reply]
    return reply  # int or None


async def _sleep_while_connected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``, or less if the client hangs up first (then False).

    A client that timed out has left; the shim stops waiting for it too, so
    that no request is still asleep when the server shuts down.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        # Only after the body is read: is_disconnected() would swallow a body chunk.
        if await request.is_disconnected():
            return False
        await asyncio.sleep(min(left, 0.05))
    return True


def _entry(reply: Any, b64: bool) -> dict[str, Any]:
    if isinstance(reply, Exception):
        return {"error": str(reply)}
    return {"result": _encode(reply, b64)}


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(redis_url: str, token: str) -> Starlette:
    """The shim as an ASGI app, talking to the Redis at ``redis_url``."""
    shim = UpstashShim(redis_url, token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await shim.start()
        try:
            yield
        finally:
            await shim.stop()

    async def handle(request: Request) -> JSONResponse:
        raw_body = await request.body()
        seconds = request.path_params.get("seconds")
        if seconds and not await _sleep_while_connected(request, seconds):
            return _error("ERR client went away", 499)
        if not shim.authorized(request):
            return _error("Unauthorized", 401)
        try:
            body = json.loads(raw_body)
        except ValueError:
            return _error("ERR failed to parse command")
        b64 = request.headers.get("upstash-encoding", "").lower() == "base64"
        route = request.url.path.rsplit("/", 1)[-1]
        try:
            if route in ("pipeline", "multi-exec"):
                if not isinstance(body, list) or not all(isinstance(c, list) for c in body):
                    return _error("ERR failed to parse pipeline request")
                run = shim.pipeline if route == "pipeline" else shim.multi_exec
                return JSONResponse([_entry(reply, b64) for reply in await run(body)])
            return JSONResponse({"result": _encode(await shim.execute(body), b64)})
        except (ResponseError, CommandError) as exc:
            return _error(str(exc))
        except RedisError as exc:
            return _error(f"ERR {exc}", 500)

    routes = []
    for base in ("", "/slow/{seconds:float}"):
        routes += [
            Route(base or "/", handle, methods=["POST"]),
            Route(f"{base}/pipeline", handle, methods=["POST"]),
            Route(f"{base}/multi-exec", handle, methods=["POST"]),
        ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.shim = shim
    return app


def slow_url(url: str, seconds: float) -> str:
    """The shim's URL with every answer delayed by ``seconds``."""
    return f"{url}/slow/{float(seconds)}"


@contextmanager
def running_upstash_shim(redis_url: str, token: str | None = None) -> Iterator[tuple[str, str]]:
    """Serve the shim on a random loopback port in a background thread; yields (url, token)."""
    token = token or secrets.token_urlsafe(24)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections
    # only when the listener's proto says TCP, and proto 0 (the default) leaves
    # Nagle on, so every answer on a stdlib loop stalls 40 ms on delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(redis_url, token),
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Requests still sleeping on /slow must not hold up the end of the tests.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="upstash-shim", daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the Upstash shim did not start (Redis at {redis_url}?)")
            thread.join(0.01)
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@pytest.fixture(scope="session")
def upstash_shim() -> Iterator[tuple[str, str]]:
    """(url, token) of one shim for the test session, in front of the test Redis.

    Skips when Redis is unreachable (fails under CI=true). Use the
    ``redis_prefix`` fixture as the key prefix so keys are cleaned up.
    """
    from tests.conftest import REDIS_HOST, REDIS_PORT, require_redis

    require_redis()
    with running_upstash_shim(f"redis://{REDIS_HOST}:{REDIS_PORT}/0") as shim:
        yield shim
