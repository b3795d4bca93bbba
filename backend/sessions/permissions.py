"""Permission modes: which tool calls a session runs, refuses, or asks the user about.

- ``auto`` (the default): every tool runs.
- ``ask``: shell, write_file and edit_file wait for the user's approval; reads run.
- ``read-only``: those tools are refused with a tool error the model sees.

Both engines ask here: the built-in loop before each tool call, OpenCode's
engine for each permission request OpenCode raises (its bash and edits, named
as the built-in tools, ``backend/agent/opencode/permissions.py``).

In ``ask`` mode a call becomes a stored ``PermissionRequest`` and a
``permission.requested`` event; the turn waits until the request has a decision.
The wait reads the store (every ``PERMISSION_POLL_SECONDS``) and wakes at once
when the answer arrives in this process, so an answer given through any server
that shares the database is seen. An interrupt denies the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from backend import events as ev
from backend.agent.tools import MUTATING_TOOLS
from backend.errors import ApiError, NotFound
from backend.records import PermissionRequest, ToolCall, new_id, utcnow
from backend.store.base import Store

log = logging.getLogger("agent_tui.sessions")

AUTO, ASK, READ_ONLY = "auto", "ask", "read-only"


class PermissionRequestNotFound(NotFound):
    code, default_message = "PERMISSION_REQUEST_NOT_FOUND", "Permission request not found"


class PermissionAlreadyAnswered(ApiError):
    status, code, default_message = 409, "PERMISSION_ALREADY_ANSWERED", "Already answered"


def refusal(call: ToolCall, mode: str, decision: str | None = None) -> str:
    """The tool error the model gets for a call that did not run."""
    if mode == READ_ONLY:
        return (
            f"Refused: this session is read-only, so {call.name} cannot run. Continue with "
            "the tools that only read (reading, listing and searching files), or ask the user "
            "to change the permission mode."
        )
    return (
        f"Denied: the user did not allow this {call.name} call. Do not retry it as is; "
        "ask the user what to do instead."
    )


def request_json(request: PermissionRequest) -> dict[str, Any]:
    """A request as the API shows it (``permission.requested`` data, session GET)."""
    return {
        "requestId": request.id,
        "messageId": request.message_id,
        "toolId": request.tool_use_id,
        "tool": request.tool,
        "input": request.input,
        "createdAt": request.created_at.isoformat().replace("+00:00", "Z"),
    }


class PermissionGate:
    """One session's permission requests: asking, waiting, answering."""

    def __init__(
        self,
        session_id: str,
        *,
        store: Store,
        emit: Callable[[str, dict[str, Any]], Awaitable[Any]],
        options: Callable[[], dict[str, Any]],
        allow_always: Callable[[str], Awaitable[None]],
        poll_seconds: float,
    ) -> None:
        self._session_id = session_id
        self._store = store
        self._emit = emit
        self._options = options
        self._allow_always = allow_always
        self._poll = poll_seconds
        self._waiters: dict[str, asyncio.Event] = {}
        # Set while the user interrupts the turn: a cancelled wait then denies its
        # request. A shutdown also cancels the turn but leaves the request pending,
        # to be answered after the restart.
        self.interrupting = False

    def waiting_for(self, request_id: str) -> bool:
        """A turn in this process waits for this request."""
        return request_id in self._waiters

    async def check(self, call: ToolCall, message_id: str) -> str | None:
        """None when ``call`` may run; else the tool error the model gets."""
        options = self._options()
        mode = options.get("permissionMode", AUTO)
        if call.name not in MUTATING_TOOLS or mode == AUTO:
            return None
        if mode == READ_ONLY:
            return refusal(call, mode)
        if call.name in options.get("allowedTools", ()):
            return None
        existing = [
            r
            for r in await self._store.list_permission_requests(self._session_id)
            if r.tool_use_id == call.id
        ]
        request = existing[-1] if existing else None
        if request is None:
            request = PermissionRequest(
                id=new_id(),
                session_id=self._session_id,
                message_id=message_id,
                tool_use_id=call.id,
                tool=call.name,
                input=call.arguments,
                created_at=utcnow(),
            )
            await self._store.add_permission_request(request)
            await self._emit(ev.PERMISSION_REQUESTED, request_json(request))
        decision = request.decision or await self._wait(request.id)
        return None if decision in ("allow", "always") else refusal(call, mode, decision)

    async def _wait(self, request_id: str) -> str:
        event = self._waiters.setdefault(request_id, asyncio.Event())
        try:
            while True:
                request = await self._store.get_permission_request(request_id)
                if request is not None and request.decision is not None:
                    return request.decision
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), self._poll)
                event.clear()
        except asyncio.CancelledError:
            if self.interrupting:
                # An interrupt denies the request (if nobody answered it meanwhile).
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.decide(request_id, "deny", reason="interrupted"))
            raise
        finally:
            self._waiters.pop(request_id, None)

    async def decide(
        self, request_id: str, decision: str, *, reason: str | None = None
    ) -> PermissionRequest:
        """Record an answer; the first one wins. Raises ``PermissionRequestNotFound``
        and ``PermissionAlreadyAnswered`` (for a different answer than the stored one)."""
        request = await self._store.get_permission_request(request_id)
        if request is None or request.session_id != self._session_id:
            raise PermissionRequestNotFound(details={"requestId": request_id})
        if request.decision is None:
            stored = await self._store.decide_permission_request(request_id, decision, utcnow())
            assert stored is not None
            if stored.decision == decision and request.decision is None:
                if decision == "always":
                    await self._allow_always(stored.tool)
                data = {"requestId": request_id, "toolId": stored.tool_use_id, "decision": decision}
                if reason:
                    data["reason"] = reason
                await self._emit(ev.PERMISSION_ANSWERED, data)
            request = stored
        if request.decision != decision:
            raise PermissionAlreadyAnswered(
                f"This request was already answered: {request.decision}",
                details={"requestId": request_id, "decision": request.decision},
            )
        event = self._waiters.get(request_id)
        if event is not None:
            event.set()
        return request
