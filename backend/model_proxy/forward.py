"""``ModelProxy``: forward a sandbox's model request with the server's key.

The request body is passed on byte for byte and the answer is streamed back
as it arrives (SSE stays SSE, with no buffering; what arrived while the last
write was going out leaves as one write), while the
``usage`` of ``message_start`` / ``message_delta`` (or of a plain JSON answer)
is read on the way and recorded as ``proxy.tokens.*`` usage of the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backend.model_proxy.tokens import ProxyGrant, ProxyTokens
from backend.records import UsageRecord, new_id, utcnow
from backend.settings import Settings
from backend.store.base import Store

__all__ = ["ModelProxy", "ProxiedResponse", "UsageReader"]

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("agent_tui.model_proxy")

DEFAULT_UPSTREAM = "https://api.anthropic.com"
# Chunks read ahead of the client at most (then reading waits: back-pressure holds).
_READ_AHEAD = 256
# Request headers passed on; everything else (the token, cookies, hop-by-hop) stays here.
_FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "anthropic-version", "anthropic-beta")
_FORWARDED_RESPONSE_HEADERS = (
    "content-type",
    "request-id",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-tokens-remaining",
)


@dataclass
class UsageReader:
    """Reads token usage from an Anthropic answer as its bytes pass by."""

    streaming: bool
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    _rest: bytes = b""
    _body: list[bytes] = field(default_factory=list)

    def feed(self, chunk: bytes) -> None:
        if not self.streaming:
            self._body.append(chunk)
            return
        data = self._rest + chunk
        if b'"message_' not in data:  # a text delta: nothing to read, keep the open line
            self._rest = data[data.rfind(b"\n") + 1 :]
            return
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            if line.startswith(b"data:") and (
                b'"message_start"' in line or b'"message_delta"' in line
            ):
                self._take(line[5:])

    def finish(self) -> None:
        if self.streaming:
            if self._rest.startswith(b"data:"):
                self._take(self._rest[5:])
            return
        body = b"".join(self._body)
        try:
            usage = json.loads(body).get("usage")
        except (ValueError, AttributeError):
            return
        if isinstance(usage, dict):
            self._add(usage, replace=False)

    def _take(self, raw: bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if event.get("type") == "message_start":
            usage = (event.get("message") or {}).get("usage")
            if isinstance(usage, dict):
                self._add(usage, replace=False)
        elif event.get("type") == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, dict):
                # message_delta carries cumulative counts.
                self._add(usage, replace=True)

    def _add(self, usage: dict[str, object], *, replace: bool) -> None:
        def number(name: str) -> int | None:
            value = usage.get(name)
            return value if isinstance(value, int) else None

        for attr, name in (
            ("input_tokens", "input_tokens"),
            ("output_tokens", "output_tokens"),
            ("cache_read_tokens", "cache_read_input_tokens"),
            ("cache_creation_tokens", "cache_creation_input_tokens"),
        ):
            value = number(name)
            if value is not None and (replace or not getattr(self, attr)):
                setattr(self, attr, value)


@dataclass
class ProxiedResponse:
    """The upstream answer: status, headers to pass on, and its body as it streams."""

    status_code: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]


class ModelProxy:
    """Checks tokens, forwards to the real model API with the real key, records usage."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        tokens: ProxyTokens,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.tokens = tokens
        self._settings = settings
        self._store = store
        self._recording: set[asyncio.Task[None]] = set()
        self._upstream = (settings.anthropic_base_url or DEFAULT_UPSTREAM).rstrip("/")
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    @property
    def _http(self) -> httpx.AsyncClient:
        """The upstream client, made on first use: httpx is not imported at start-up
        (it is ~0.1 s of the embedded backend's launch, and most servers never proxy)."""
        if self._client is None:
            import httpx

            # No read timeout: a model's stream may pause for long; the client's own
            # timeout and disconnect end it.
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(connect=10.0, read=None, write=30.0, pool=10.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return self._client

    async def check(self, session_id: str, token: str | None) -> ProxyGrant | None:
        """The grant for this session's token, or None (refuse with 401).

        Raises ``StoreUnavailable`` when the tokens cannot be read."""
        return await self.tokens.verify(token, session_id)

    async def forward(
        self, grant: ProxyGrant, path: str, headers: dict[str, str], body: bytes
    ) -> ProxiedResponse:
        """Send the request upstream with the server's key; the body streams back.

        Raises ``httpx.HTTPError`` when the upstream cannot be reached.
        """
        out_headers = {k: v for k, v in headers.items() if k.lower() in _FORWARDED_REQUEST_HEADERS}
        out_headers.setdefault("anthropic-version", "2023-06-01")
        out_headers["x-api-key"] = self._settings.anthropic_api_key
        request = self._http.build_request(
            "POST", f"{self._upstream}/{path}", headers=out_headers, content=body
        )
        response = await self._http.send(request, stream=True)
        content_type = response.headers.get("content-type", "")
        reader = UsageReader(streaming=content_type.startswith("text/event-stream"))
        passed = {
            k: v for k, v in response.headers.items() if k.lower() in _FORWARDED_RESPONSE_HEADERS
        }

        async def stream() -> AsyncIterator[bytes]:
            # A model streams one small chunk per delta. Written one by one, each
            # costs a trip through the ASGI stack; read by a task of its own, those
            # that arrive while a write goes out leave together, with no added wait.
            chunks: asyncio.Queue[bytes | Exception | None] = asyncio.Queue(_READ_AHEAD)

            async def read() -> None:
                try:
                    async for chunk in response.aiter_raw():
                        reader.feed(chunk)
                        await chunks.put(chunk)
                except Exception as exc:
                    await chunks.put(exc)
                else:
                    await chunks.put(None)

            reading = asyncio.create_task(read())
            try:
                while True:
                    parts = [await chunks.get()]
                    while not chunks.empty():
                        parts.append(chunks.get_nowait())
                    last = parts[-1]
                    if isinstance(last, bytes):
                        yield b"".join(parts)  # type: ignore[arg-type]
                        continue
                    if len(parts) > 1:
                        yield b"".join(parts[:-1])  # type: ignore[arg-type]
                    if last is None:
                        break
                    raise last
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
                await response.aclose()
                reader.finish()
                if path == "v1/messages" and response.status_code == 200:
                    # Its own task: a client that goes away cancels this generator,
                    # and the bookkeeping must not be cut halfway through a write.
                    task = asyncio.create_task(self._record(grant, reader))
                    self._recording.add(task)
                    task.add_done_callback(self._recording.discard)

        return ProxiedResponse(response.status_code, passed, stream())

    async def _record(self, grant: ProxyGrant, usage: UsageReader) -> None:
        now = utcnow()
        records = [
            UsageRecord(new_id(), grant.user_id, kind, quantity, now, grant.session_id)
            for kind, quantity in (
                ("proxy.tokens.input", usage.input_tokens + usage.cache_creation_tokens),
                ("proxy.tokens.output", usage.output_tokens),
                ("proxy.tokens.cache_read", usage.cache_read_tokens),
                ("proxy.requests", 1),
            )
            if quantity
        ]
        try:
            await self._store.add_usage(records)
        except Exception as exc:  # usage is bookkeeping: never fail the answer for it
            log.warning("could not record model-proxy usage: %s", type(exc).__name__)

    async def aclose(self) -> None:
        if self._recording:
            await asyncio.gather(*self._recording, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
