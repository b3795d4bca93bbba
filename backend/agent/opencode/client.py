"""OpenCode's HTTP API, as far as a turn needs it.

``GET /global/health``, ``POST /session``, ``GET /session/{id}``,
``POST /session/{id}/prompt_async`` (answers 204 at once; the reply comes as
events), ``POST /session/{id}/abort``, ``GET /permission``,
``POST /permission/{id}/reply`` and the ``GET /event`` SSE stream (``data:``
lines of ``{"type", "properties"}``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from backend.agent.opencode.errors import OpenCodeUnavailable

__all__ = ["OpenCodeClient", "OpenCodeUnavailable", "sse_data"]


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
            delay = min(delay * 1.5, 0.5)

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

    async def aclose(self) -> None:
        await self._http.aclose()
