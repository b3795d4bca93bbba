"""``SessionHandle``: everything one session offers (turns, events, files, lifecycle)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from agent_tui.client.errors import TIMEOUT, AgentApiError, connection_error, parse
from agent_tui.client.streams import (
    FINAL_TYPES,
    ConnectionState,
    Resync,
    call_back,
    follow,
    iter_frames,
)
from backend.events import ERROR, Event
from backend.schemas import (
    CompactionOut,
    FileEntryOut,
    FileList,
    LogList,
    MessageList,
    MessageOut,
    PermissionOut,
    SessionOut,
)

if TYPE_CHECKING:
    from agent_tui.client.client import AgentClient

# Statuses a session can leave on its own; anything else is as ready as it gets.
_WAITING_STATUSES = ("starting",)


def file_url_path(path: str, *, directory: bool) -> str:
    """The URL path of a workspace path, relative to ``.../files/``.

    Dot segments are percent-encoded: httpx would otherwise resolve ``..`` itself and
    send a different path, and the server is the one that must judge (and refuse) it.
    """
    segments = [s for s in path.strip("/").split("/") if s]
    encoded = "/".join("%2E" * len(s) if s in (".", "..") else quote(s, safe="") for s in segments)
    if directory and encoded:
        encoded += "/"
    return encoded


class SessionHandle:
    """One session of the Agent API, by id. ``info`` holds its last known state."""

    def __init__(
        self, client: AgentClient, session_id: str, info: SessionOut | None = None
    ) -> None:
        self.id = session_id
        self.info = info
        self._client = client
        self._path = f"/v1/sessions/{session_id}"

    def __repr__(self) -> str:
        status = self.info.status if self.info else "?"
        return f"SessionHandle(id={self.id!r}, status={status!r})"

    async def _session(self, method: str, suffix: str = "", **kwargs: Any) -> SessionOut:
        data = await self._client.request_json(method, self._path + suffix, **kwargs)
        if isinstance(data, dict) and "createdAt" not in data:
            # A short {"id", "status"} answer: fetch the whole session.
            return await self.refresh()
        self.info = parse(SessionOut, data)
        return self.info

    # ---- lifecycle

    async def refresh(self) -> SessionOut:
        """Fetch the session's current state into ``info``."""
        return await self._session("GET")

    async def wait_until_ready(self, timeout: float = 60.0) -> SessionOut:  # noqa: ASYNC109 (the fixed API)
        """Poll until the session has started (status no longer ``starting``).

        Raises ``AgentApiError``: the session's own error code when it failed,
        ``SESSION_TERMINATED`` when it was deleted, ``TIMEOUT`` after ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            info = await self.refresh()
            if info.status == "error":
                error = info.error or {}
                raise AgentApiError(
                    str(error.get("code") or "SESSION_ERROR"),
                    str(error.get("message") or "The session failed to start"),
                    details={"sessionId": self.id, **error.get("details", {})},
                )
            if info.status == "terminated":
                raise AgentApiError(
                    "SESSION_TERMINATED",
                    "The session was deleted",
                    details={"sessionId": self.id},
                )
            if info.status not in _WAITING_STATUSES:
                return info
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentApiError(
                    TIMEOUT,
                    f"The session was still {info.status} after {timeout:g} s",
                    details={"sessionId": self.id, "status": info.status},
                )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 1.0)

    async def rename(self, title: str) -> SessionOut:
        """Set the session's title."""
        return await self._session("PATCH", json={"title": title})

    async def update(
        self,
        *,
        title: str | None = None,
        model: str | None = None,
        thinking: bool | None = None,
        permission_mode: str | None = None,
    ) -> SessionOut:
        """Change some of the session's settings (``None`` leaves one as it is). The
        model, thinking and the permission mode apply from the next turn's calls."""
        body = {
            "title": title,
            "model": model,
            "thinking": thinking,
            "permissionMode": permission_mode,
        }
        return await self._session("PATCH", json={k: v for k, v in body.items() if v is not None})

    async def set_model(self, model: str) -> SessionOut:
        """Use ``model`` from the next turn on (one of ``AgentClient.list_models``)."""
        return await self.update(model=model)

    async def compact(self) -> CompactionOut:
        """Compact the model's context now (``compacted`` False when too short)."""
        data = await self._client.request_json("POST", self._path + "/compact")
        return parse(CompactionOut, data)

    async def answer_permission(self, request_id: str, decision: str) -> PermissionOut:
        """Answer a ``permission.requested`` event: ``allow``, ``deny`` or ``always``."""
        data = await self._client.request_json(
            "POST", f"{self._path}/permissions/{request_id}", json={"decision": decision}
        )
        return parse(PermissionOut, data)

    async def delete(self) -> None:
        """Terminate the session's sandbox; its history stays readable. Idempotent."""
        await self._client.request("DELETE", self._path)
        if self.info is not None:
            self.info = self.info.model_copy(update={"status": "terminated"})

    async def interrupt(self) -> None:
        """Stop the running turn (a no-op when idle); the turn's stream ends with ``session.idle``."""
        await self._client.request("POST", self._path + "/interrupt")

    async def pause(self) -> SessionOut:
        """Snapshot the sandbox and stop it (status ``paused``)."""
        return await self._session("POST", "/pause")

    async def resume(self) -> SessionOut:
        """Start the sandbox again from its snapshot (status ``idle``)."""
        return await self._session("POST", "/resume")

    # ---- turns and events

    async def send_message(
        self, content: str, *, on_event: Callable[[Event], Awaitable[None] | None] | None = None
    ) -> list[Event]:
        """Run one turn; return its events (each also passed to ``on_event`` as it arrives).

        Ends after ``session.idle`` (also after a failed turn, whose ``error`` event
        comes first), ``session.error``, ``session.paused`` or ``session.terminated``.
        """
        events: list[Event] = []
        async for event in self.stream_message(content):
            events.append(event)
            await call_back(on_event, event)
        return events

    async def stream_message(self, content: str) -> AsyncIterator[Event]:
        """Run one turn, yielding its events as they arrive (see ``send_message``).

        If the turn's stream drops after its first event, the rest of the turn is
        read from the session's event log, so no event is lost or repeated.
        """
        last_seq: int | None = None
        last_type: str | None = None
        dropped: Exception | None = None
        client = self._client
        async with client.open_stream(
            "POST",
            self._path + "/messages",
            json={"content": content},
            read_timeout=client.heartbeat_timeout,
        ) as response:
            try:
                async with aclosing(iter_frames(response)) as frames:
                    async for item in frames:
                        if isinstance(item, Resync):
                            break  # not expected on a turn; the fallback below covers it
                        last_seq, last_type = item.seq, item.type
                        yield item
                        if item.type in FINAL_TYPES:
                            return
            except httpx.TransportError as exc:
                dropped = exc
        if last_type == ERROR and dropped is None:
            return  # a server that ends a failed turn at ``error``
        if last_seq is None:
            # Nothing arrived, so we cannot tell where the turn is: say so.
            raise connection_error(client.base_url, dropped or RuntimeError("empty stream"))
        rest = follow(
            client,
            self.id,
            after=last_seq,
            on_state=None,
            heartbeat_timeout=client.heartbeat_timeout,
        )
        async with aclosing(rest):
            async for event in rest:
                yield event
                if event.type in FINAL_TYPES:
                    return

    def follow_events(
        self,
        *,
        after: int | None = None,
        on_state: Callable[[ConnectionState], Any] | None = None,
        heartbeat_timeout: float = 30.0,
    ) -> AsyncIterator[Event]:
        """Follow the session's events: replay after ``after``, then live, reconnecting.

        ``after=None`` starts from now (the session's current last event id);
        after that the client always resumes from the last event it yielded. Never yields
        an event twice or out of order. No byte for ``heartbeat_timeout`` s, a
        dropped connection, or a ``stream.resync`` notice means reconnect, with
        backoff from 0.2 s doubling to 5 s; ``on_state`` hears ``CONNECTED`` /
        ``RECONNECTING`` and finally ``CLOSED``. Ends only when the consumer stops
        iterating, or raises ``AgentApiError`` for an answer retrying cannot fix
        (401, 403, 404).
        """
        return follow(
            self._client,
            self.id,
            after=after,
            on_state=on_state,
            heartbeat_timeout=heartbeat_timeout,
        )

    async def messages(
        self, *, limit: int | None = None, before: str | None = None
    ) -> list[MessageOut]:
        """The conversation, oldest first (``before``: a message id, for older pages)."""
        data = await self._client.request_json(
            "GET", self._path + "/messages", params={"limit": limit, "before": before}
        )
        return parse(MessageList, data).messages

    # ---- files and logs

    async def list_files(self, path: str = "/") -> list[FileEntryOut]:
        """The entries of a workspace directory (paths relative to the workspace root)."""
        url = f"{self._path}/files/{file_url_path(path, directory=True)}"
        data = await self._client.request_json("GET", url)
        return parse(FileList, data).files

    async def read_file(self, path: str) -> bytes:
        """A workspace file's bytes."""
        if not path.strip("/"):
            raise AgentApiError(
                "VALIDATION_ERROR", "read_file needs a file path, not the workspace root"
            )
        url = f"{self._path}/files/{file_url_path(path, directory=False)}"
        response = await self._client.request("GET", url)
        return response.content

    async def read_text(self, path: str) -> str:
        """A workspace file as text (UTF-8; undecodable bytes become U+FFFD)."""
        return (await self.read_file(path)).decode("utf-8", errors="replace")

    async def logs(self, tail: int = 100) -> list[str]:
        """The last ``tail`` lines of the sandbox and agent logs."""
        data = await self._client.request_json("GET", self._path + "/logs", params={"tail": tail})
        return parse(LogList, data).logs
