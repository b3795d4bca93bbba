"""``AgentClient``: the async Python client of the Agent API (keys, sessions, usage).

The same client talks to a remote server and to the backend embedded in the TUI;
only the transport differs (TCP, or a Unix socket from ``agent_tui.embedded``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from agent_tui import __version__
from agent_tui.client.errors import (
    INVALID_RESPONSE,
    AgentApiError,
    connection_error,
    error_from_body,
    parse,
)
from agent_tui.client.session import SessionHandle
from agent_tui.client.streams import call_back, iter_frames
from backend.events import SESSION_ERROR, SESSION_READY, Event
from backend.schemas import (
    KeyCreated,
    KeyList,
    KeyOut,
    ModelList,
    SessionList,
    SessionOut,
    UsageOut,
)

EventCallback = Callable[[Event], Awaitable[None] | None]

# Turn and creation streams carry a keepalive at least every 15 s: twice that
# without a byte means the connection is gone.
DEFAULT_HEARTBEAT_TIMEOUT = 30.0


@dataclass
class RateLimitInfo:
    """The ``X-RateLimit-*`` headers of the last ``/v1`` response."""

    limit: int
    remaining: int
    reset: float  # unix seconds


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AgentClient:
    """An Agent API client over httpx.

    ``transport`` replaces the network (the embedded backend passes a Unix-socket
    transport). Every failure raises ``AgentApiError``. Use as an async context
    manager, or call ``aclose()``.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.heartbeat_timeout = heartbeat_timeout
        self.last_rate_limit: RateLimitInfo | None = None
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": f"agent-tui/{__version__}",
            },
        )

    async def aclose(self) -> None:
        """Close the connection pool (and the transport it owns)."""
        await self._http.aclose()

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ---- plumbing

    def _note_rate_limit(self, response: httpx.Response) -> None:
        headers = response.headers
        try:
            self.last_rate_limit = RateLimitInfo(
                limit=int(headers["x-ratelimit-limit"]),
                remaining=int(headers["x-ratelimit-remaining"]),
                reset=float(headers["x-ratelimit-reset"]),
            )
        except (KeyError, ValueError):
            pass  # not a /v1 route, or a server without the headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        background: bool = False,
    ) -> httpx.Response:
        """One request; a 2xx response, else ``AgentApiError``.

        ``background``: an automatic refresh, not the user's action. It says so to
        the server (which counts it apart from the user's rate limit) and leaves
        ``last_rate_limit`` as the user's last request left it.
        """
        if params:
            params = {k: v for k, v in params.items() if v is not None}
        headers = {"X-Background-Refresh": "1"} if background else None
        try:
            response = await self._http.request(
                method, path, json=json, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            raise connection_error(self.base_url, exc) from exc
        if not background:
            self._note_rate_limit(response)
        if response.status_code >= 400:
            raise error_from_body(response.status_code, response.content, response.headers)
        return response

    async def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request whose 2xx answer is JSON."""
        response = await self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise AgentApiError(
                INVALID_RESPONSE,
                f"{method} {path} answered {response.status_code} without JSON "
                f"(content-type {response.headers.get('content-type')!r}); is {self.base_url} an Agent API?",
                status=response.status_code,
            ) from exc

    @asynccontextmanager
    async def open_stream(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        read_timeout: float | None = None,
        allow_json: bool = False,
    ) -> AsyncIterator[httpx.Response]:
        """An open SSE response (status checked before the body is read).

        ``read_timeout`` bounds the gap between two bytes, not the whole stream.
        With ``allow_json``, a JSON 2xx answer is handed over too (the caller reads it).
        """
        timeout = self._http.timeout
        if read_timeout is not None:
            timeout = httpx.Timeout(
                connect=timeout.connect, read=read_timeout, write=timeout.write, pool=timeout.pool
            )
        request = self._http.build_request(
            method,
            path,
            json=json,
            headers={"Accept": "text/event-stream", "Cache-Control": "no-store", **(headers or {})},
            timeout=timeout,
        )
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise connection_error(self.base_url, exc) from exc
        try:
            self._note_rate_limit(response)
            if response.status_code >= 400:
                try:
                    body = await response.aread()
                except httpx.TransportError as exc:
                    raise connection_error(self.base_url, exc) from exc
                raise error_from_body(response.status_code, body, response.headers)
            content_type = response.headers.get("content-type", "")
            if "text/event-stream" not in content_type and not (
                allow_json and "json" in content_type
            ):
                raise AgentApiError(
                    INVALID_RESPONSE,
                    f"{method} {path} answered {response.status_code} with {content_type!r}, "
                    f"not an event stream; is {self.base_url} an Agent API?",
                    status=response.status_code,
                )
            yield response
        finally:
            await response.aclose()

    # ---- health

    async def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status", "version", "timestamp"}`` (no key needed)."""
        return await self.request_json("GET", "/health")

    # ---- keys

    async def list_keys(self) -> list[KeyOut]:
        """The keys of the caller's user (never the keys themselves)."""
        data = await self.request_json("GET", "/v1/keys")
        return parse(KeyList, data).keys

    async def create_key(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        environment: str = "live",
        expires_at: datetime | None = None,
    ) -> KeyCreated:
        """Create a key for the caller's user (admin scope); ``.key`` is shown this once."""
        body: dict[str, Any] = {
            "name": name,
            "environment": environment,
            "scopes": list(scopes) if scopes is not None else ["sessions"],
        }
        if expires_at is not None:
            body["expiresAt"] = _iso(expires_at)
        data = await self.request_json("POST", "/v1/keys", json=body)
        return parse(KeyCreated, data)

    async def revoke_key(self, key_id: str) -> None:
        """Revoke a key (admin scope); revoking twice is not an error."""
        await self.request("DELETE", f"/v1/keys/{key_id}")

    # ---- sessions

    def session(self, session_id: str) -> SessionHandle:
        """A handle on an existing session, without a request."""
        return SessionHandle(self, session_id)

    async def create_session(
        self,
        *,
        title: str | None = None,
        repo: str | None = None,
        git_token: str | None = None,
        system_prompt: str | None = None,
        model: str | None = None,
        engine: str | None = None,
        on_event: EventCallback | None = None,
    ) -> SessionHandle:
        """Create a session and return its handle (``info`` filled in).

        Without ``on_event`` the answer comes at once with status ``starting``: call
        ``wait_until_ready()``. With ``on_event`` the creation is streamed:
        ``session.created``, ``session.progress``*, then ``session.ready`` or
        ``session.error`` reach the callback, and this returns when the session is
        ready or failed (check ``handle.info.status``; ``wait_until_ready`` raises).
        """
        body = {
            key: value
            for key, value in (
                ("title", title),
                ("repo", repo),
                ("gitToken", git_token),
                ("systemPrompt", system_prompt),
                ("model", model),
                ("engine", engine),
            )
            if value is not None
        }
        if on_event is None:
            data = await self.request_json("POST", "/v1/sessions", json=body)
            info = parse(SessionOut, data)
            return SessionHandle(self, info.id, info)

        session_id: str | None = None
        async with self.open_stream(
            "POST",
            "/v1/sessions",
            json=body,
            read_timeout=self.heartbeat_timeout,
            allow_json=True,
        ) as response:
            if "json" in response.headers.get("content-type", ""):
                # A server that does not stream creation: same result, no progress.
                await response.aread()
                info = parse(SessionOut, response.json())
                return SessionHandle(self, info.id, info)
            # The Location header names the session before any event arrives.
            location = response.headers.get("location", "")
            session_id = location.rstrip("/").rsplit("/", 1)[-1] or None
            try:
                async with aclosing(iter_frames(response)) as frames:
                    async for item in frames:
                        if not isinstance(item, Event):
                            continue
                        session_id = session_id or item.data.get("sessionId") or item.session_id
                        await call_back(on_event, item)
                        if item.type in (SESSION_READY, SESSION_ERROR):
                            break
            except httpx.TransportError as exc:
                # Once the session exists its start goes on without us: hand it back.
                if session_id is None:
                    raise connection_error(self.base_url, exc) from exc
        if session_id is None:
            raise AgentApiError(
                INVALID_RESPONSE, "The session-creation stream ended before session.created"
            )
        handle = SessionHandle(self, session_id)
        await handle.refresh()
        return handle

    async def list_sessions(
        self,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        background: bool = False,
    ) -> tuple[list[SessionOut], str | None]:
        """One page of the user's sessions, newest first, and the cursor of the next page.
        ``background``: an automatic refresh (see ``request``)."""
        data = await self.request_json(
            "GET",
            "/v1/sessions",
            params={"status": status, "limit": limit, "cursor": cursor},
            background=background,
        )
        page = parse(SessionList, data)
        return page.sessions, page.next_cursor

    async def get_session(self, session_id: str, *, background: bool = False) -> SessionOut:
        """One session. ``background``: an automatic refresh (see ``request``)."""
        data = await self.request_json("GET", f"/v1/sessions/{session_id}", background=background)
        return parse(SessionOut, data)

    # ---- models

    async def list_models(self) -> ModelList:
        """The models sessions can use (``models``), the default one and the list's source."""
        return parse(ModelList, await self.request_json("GET", "/v1/models"))

    # ---- usage

    async def usage(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        session_id: str | None = None,
    ) -> UsageOut:
        """The user's usage summed by event type and by day, optionally for one session."""
        data = await self.request_json(
            "GET",
            "/v1/usage",
            params={
                "from": _iso(start) if start else None,
                "to": _iso(end) if end else None,
                "sessionId": session_id,
            },
        )
        return parse(UsageOut, data)
