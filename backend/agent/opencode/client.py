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
from httpx_sse import aconnect_sse

from backend.agent.opencode.errors import OpenCodeUnavailable

__all__ = ["OpenCodeClient", "OpenCodeUnavailable"]


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
        """OpenCode's events, parsed, as they come (ends when the server closes)."""
        try:
            async with aconnect_sse(self._http, "GET", "/event") as source:
                async for sse in source.aiter_sse():
                    if not sse.data:
                        continue
                    try:
                        yield json.loads(sse.data)
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
