"""OpenCode's HTTP API, as far as a turn needs it.

``GET /global/health``, ``POST /session``, ``GET /session/{id}``,
``POST /session/{id}/prompt_async`` (answers 204 at once; the reply comes as
events), ``POST /session/{id}/abort``, ``GET /permission``,
``POST /permission/{id}/reply`` and the ``GET /event`` SSE stream (``data:``
lines of ``{"type", "properties"}``).

One ``/event`` subscription serves every turn (``turn_events``): it is opened
by the first turn and kept, so a turn does not wait for a new stream to
connect before its prompt. Events that come between turns are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from backend.agent.opencode.errors import OpenCodeUnavailable

__all__ = ["OpenCodeClient", "OpenCodeUnavailable", "sse_data"]

_ENDED = object()  # the subscription's stream ended


async def sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The ``data`` of each server-sent event in ``chunks`` (multi-line data joined
    by newlines; ``event``, ``id``, ``retry`` and comments ignored; LF, CRLF or CR
    line ends; an event the stream ends in the middle of is dropped)."""
    rest = b""
    data: list[bytes] = []
    async for chunk in chunks:
        text = rest + chunk
        if b"\r" in text:
            # A CR at the very end may be the first half of a CRLF.
            keep = text.endswith(b"\r")
            text = text[:-1] if keep else text
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + (b"\r" if keep else b"")
        lines = text.split(b"\n")
        rest = lines.pop()
        for line in lines:
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)


class TurnEvents:
    """One turn's view of the kept ``/event`` subscription: first
    ``{"type": "server.connected"}`` once it is live (prompt only after it),
    then each event as it comes, until the stream ends or ``aclose``.

    Not a generator: a cancelled read leaves it usable, so an interrupted turn
    can still take in OpenCode's last events of the turn (the abort's), which
    would otherwise reach the next turn.
    """

    def __init__(self, client: OpenCodeClient) -> None:
        self._client = client
        self._queue: asyncio.Queue[Any] | None = None
        self._done = False

    def __aiter__(self) -> TurnEvents:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        if self._queue is None:
            self._queue = await self._client._listen()
            return {"type": "server.connected", "properties": {}}
        item = await self._queue.get()
        if item is _ENDED:
            await self.aclose()
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        if not self._done and self._queue is not None:
            self._client._unlisten(self._queue)
        self._done = True


class OpenCodeClient:
    """One OpenCode server, reached through the sandbox's service transport."""

    def __init__(
        self,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(30.0, read=None),
        )
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._reading: asyncio.Task[None] | None = None
        self._listening = False

    async def healthy(self) -> bool:
        try:
            response = await self._http.get("/global/health", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and bool(response.json().get("healthy"))

    async def wait_healthy(self, *, timeout: float, is_running: Any = None) -> None:  # noqa: ASYNC109
        """Poll the health route until it answers (bounded); fail early if the
        process died (``is_running``, an async callable)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            if await self.healthy():
                return
            if is_running is not None and not await is_running():
                raise OpenCodeUnavailable(
                    "OpenCode exited while starting; see .agent-tui/opencode.log"
                )
            if loop.time() >= deadline:
                raise OpenCodeUnavailable(f"OpenCode did not become healthy within {timeout:g}s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)  # a probe is cheap; OpenCode starts in seconds

    async def _json(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise OpenCodeUnavailable(f"OpenCode request failed: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            raise OpenCodeUnavailable(
                f"OpenCode answered {response.status_code} to {method} {path}",
                details={"body": response.text[:500]},
            )
        return response.json() if response.content else None

    async def create_session(self, title: str | None = None) -> str:
        body = {"title": title} if title else {}
        return str((await self._json("POST", "/session", json=body))["id"])

    async def session_exists(self, session_id: str) -> bool:
        try:
            response = await self._http.get(f"/session/{session_id}")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def prompt(
        self, session_id: str, text: str, *, system: str | None = None, variant: str | None = None
    ) -> None:
        body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
        if system:
            body["system"] = system
        if variant:
            body["variant"] = variant
        await self._json("POST", f"/session/{session_id}/prompt_async", json=body)

    async def abort(self, session_id: str) -> None:
        await self._json("POST", f"/session/{session_id}/abort")

    async def reply_permission(
        self, request_id: str, reply: str, *, message: str | None = None
    ) -> None:
        """``once``, ``always`` or ``reject``; a reject's ``message`` is the tool
        error the model sees (without one, OpenCode stops the turn)."""
        body = {"reply": reply, **({"message": message} if message else {})}
        await self._json("POST", f"/permission/{request_id}/reply", json=body)

    async def pending_permissions(self) -> set[str]:
        """The ids of the permission requests OpenCode still waits on."""
        return {str(r.get("id")) for r in await self._json("GET", "/permission") or []}

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """OpenCode's events, parsed, as they come (ends when the server closes).

        A turn brings thousands (one per text delta), so the stream is split on
        bytes here rather than decoded and split line by line by a generic SSE
        reader: a third of this server's CPU time per OpenCode turn went there.
        """
        try:
            async with self._http.stream(
                "GET", "/event", headers={"Accept": "text/event-stream"}
            ) as response:
                if response.status_code != 200:
                    raise OpenCodeUnavailable(
                        f"OpenCode answered {response.status_code} to GET /event"
                    )
                async for data in sse_data(response.aiter_bytes()):
                    try:
                        yield json.loads(data)
                    except ValueError:
                        continue
        except httpx.HTTPError as exc:
            # A broken stream (OpenCode exited mid-answer, say) is OpenCode being
            # unavailable, not an error of this server.
            raise OpenCodeUnavailable(
                f"OpenCode's event stream broke: {type(exc).__name__}"
            ) from exc

    def turn_events(self) -> TurnEvents:
        """Events for one turn (see ``TurnEvents``). One turn at a time."""
        if self._listening:
            raise RuntimeError("one turn at a time reads OpenCode's events")
        return TurnEvents(self)

    async def _listen(self) -> asyncio.Queue[Any]:
        if self._reading is None or self._reading.done():
            await self._subscribe()
        self._listening = True
        return self._queue

    def _unlisten(self, queue: asyncio.Queue[Any]) -> None:
        self._listening = False
        while not queue.empty() and queue.get_nowait() is not _ENDED:
            pass
        if self._reading is not None and self._reading.done():
            self._reading = None  # ended: the next turn subscribes again

    async def _subscribe(self) -> None:
        """Open ``/event`` and wait for its ``server.connected``; a task reads on."""
        events = self.events()
        try:
            await anext(events)
        except BaseException:
            await events.aclose()
            raise
        self._queue = asyncio.Queue()
        self._reading = asyncio.create_task(self._read(events, self._queue))

    async def _read(self, events: AsyncIterator[dict[str, Any]], queue: asyncio.Queue[Any]) -> None:
        try:
            async for event in events:
                if self._listening:
                    queue.put_nowait(event)
        except Exception as exc:
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(_ENDED)
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading
        await self._http.aclose()
