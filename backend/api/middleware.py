"""The one ASGI middleware in front of every route.

It gives each request an id (the caller's ``X-Request-ID`` when sane), puts it
on the response and in every log line, names the replica that answered
(``X-Replica-ID``), enforces the body size limit with the contract's 413 body,
and copies the rate-limit verdict of ``/v1`` requests onto the response headers
(errors included).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import InternalError, PayloadTooLarge
from backend.replica import replica_id

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
access_log = logging.getLogger("agent_tui.access")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` and ``replica_id`` to every log record (the format string uses them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.replica_id = replica_id()
        return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


MODEL_PROXY_PREFIX = "/v1/model-proxy/"
MODEL_PROXY_MAX_BODY_BYTES = 32 * 1024 * 1024


class RequestContextMiddleware:
    """Request id, replica id, body limit, rate-limit headers and the access log."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, replica: str = "") -> None:
        """``replica`` is the ``X-Replica-ID`` of every response (default: ``replica_id()``)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.replica_header = (b"x-replica-id", (replica or replica_id()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _SANE_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        # Headers of every response, the middleware's own answers included.
        id_headers = [(b"x-request-id", request_id.encode()), self.replica_header]
        started = time.perf_counter()
        status_holder = [0]
        try:
            if scope["method"] in _BODY_METHODS:
                receive = await self._buffer_body(scope, receive, send, id_headers)
                if receive is None:
                    status_holder[0] = 413
                    return

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status_holder[0] = message["status"]
                    headers = list(message.get("headers", ()))
                    headers.extend(id_headers)
                    verdict = scope.get("state", {}).get("rate_limit")
                    if verdict is not None:
                        headers.extend(
                            (
                                (b"x-ratelimit-limit", str(verdict.limit).encode()),
                                (b"x-ratelimit-remaining", str(verdict.remaining).encode()),
                                (b"x-ratelimit-reset", str(int(verdict.reset)).encode()),
                            )
                        )
                    message = {**message, "headers": headers}
                await send(message)

            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                # A bug: log it with the request id, answer the contract's 500 with
                # no internals (unless the response had already started).
                logging.getLogger("agent_tui.api").exception(
                    "unhandled error on %s %s", scope["method"], scope["path"]
                )
                if status_holder[0] == 0:
                    status_holder[0] = 500
                    await _send_json(send, 500, InternalError().body(), id_headers)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope["path"],
                    status_holder[0],
                    (time.perf_counter() - started) * 1000,
                )
            request_id_var.reset(token)

    async def _buffer_body(
        self, scope: Scope, receive: Receive, send: Send, id_headers: list[tuple[bytes, bytes]]
    ) -> Receive | None:
        """Read the whole body (bounded) up front; answer 413 and return None if too large."""
        limit = self.max_body_bytes
        if scope["path"].startswith(MODEL_PROXY_PREFIX):
            # A model call carries the whole conversation: Anthropic's own limit applies.
            limit = max(limit, MODEL_PROXY_MAX_BODY_BYTES)
        too_large = PayloadTooLarge(
            f"Request body exceeds {limit} bytes", details={"limitBytes": limit}
        )
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, too_large.body(), id_headers)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # Replay the disconnect; the route will notice.
                pending = [message]
                break
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _send_json(send, 413, too_large.body(), id_headers)
                return None
            chunks.append(body)
            if not message.get("more_body", False):
                pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                break

        async def replay() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        return replay
