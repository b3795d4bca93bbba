"""OpenCode's permission requests as the tool calls the session's permission gate judges.

OpenCode asks (``permission.asked``) before a ``bash`` command and before an
edit (its ``edit``, ``write`` and ``apply_patch`` tools all ask ``edit``), and
for a few things that change nothing (a path outside the workspace, a repeated
call). Each request becomes a ``ToolCall`` named as the built-in engine's tools
are (``shell``, ``write_file``, ``edit_file``; anything else keeps OpenCode's
name), with the id and the arguments of the tool call that asked, so that the
gate decides exactly as for the built-in engine and ``always`` means the same
tool in both. The engine then replies ``once`` or ``reject`` with the gate's
refusal as the message the model reads; it never replies ``always``, which
OpenCode would remember where a later mode change could not reach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from backend.agent.opencode.errors import OpenCodeUnavailable
from backend.records import ToolCall

if TYPE_CHECKING:
    from backend.agent.opencode.client import OpenCodeClient
    from backend.agent.opencode.events import TurnMapper

__all__ = ["PermissionAnswers", "permission_call"]


def _tool_name(permission: str, opencode_tool: str | None) -> str:
    if permission == "bash":
        return "shell"
    if permission == "edit":
        return "write_file" if opencode_tool == "write" else "edit_file"
    return permission


def permission_call(request: dict[str, Any], tools: dict[str, ToolCall]) -> ToolCall:
    """The call that ``request`` (``permission.asked`` properties) asks to run.

    ``tools`` are the turn's tool calls by id (their arguments are what the
    model sent); a subagent's call is not among them, so its arguments come
    from the request itself.
    """
    source = request.get("tool") or {}
    call_id = str(source.get("callID") or request.get("id"))
    known = tools.get(call_id)
    if known is not None:
        arguments = dict(known.arguments)
        opencode_tool: str | None = known.name
    else:
        # bash's metadata is {command}, an edit's {filepath, diff} (the diff stays out).
        metadata = request.get("metadata") or {}
        arguments = {k: v for k, v in metadata.items() if k != "diff"}
        opencode_tool = None
    return ToolCall(
        id=call_id,
        name=_tool_name(str(request.get("permission") or ""), opencode_tool),
        arguments=arguments,
    )


class PermissionAnswers:
    """Answers one turn's OpenCode permission requests by the session's gate.

    The gate is ``observer.check_permission`` (the session actor's; it may wait
    for the user). Requests are answered one at a time, in the order asked.
    """

    def __init__(self, client: OpenCodeClient, mapper: TurnMapper, observer: Any) -> None:
        self._client = client
        self._mapper = mapper
        self._check = getattr(observer, "check_permission", None)
        self._rejected = False

    async def answer_pending(self) -> None:
        """Answer every request the turn has seen and not answered yet."""
        requests = self._mapper.permission_requests
        while requests:
            await self._answer(requests.pop(0))

    async def _answer(self, request: dict[str, Any]) -> None:
        request_id = str(request["id"])
        # OpenCode rejects a session's other waiting requests along with a rejected
        # one: those are settled, and the user is not asked about them.
        if self._rejected and not await self._still_pending(request_id):
            return
        call = permission_call(request, self._mapper.tools)
        refusal = None if self._check is None else await self._check(call)
        try:
            if refusal is None:
                await self._client.reply_permission(request_id, "once")
            else:
                self._rejected = True
                await self._client.reply_permission(request_id, "reject", message=refusal)
        except OpenCodeUnavailable:
            if await self._still_pending(request_id):
                raise
            # Settled meanwhile (an abort): nothing to answer.

    async def _still_pending(self, request_id: str) -> bool:
        return request_id in await self._client.pending_permissions()
