"""Permission prompts: a tool call waiting for approval, answered with y / n / a.

The tray sits above the chat's prompt and holds the requests of every session,
not only the open one, so a session waiting on the user is never missed.
"""

from __future__ import annotations

import json
from typing import Any

from textual.binding import Binding
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Static

_SUMMARY_CHARS = 160


def describe_call(tool: str, arguments: dict[str, Any]) -> str:
    """What the call would do, in one short line."""
    # OpenCode's tools name the file filePath (its subagents' requests filepath).
    path = next((arguments[k] for k in ("path", "filePath", "filepath") if k in arguments), None)
    if tool == "shell":
        text = str(arguments.get("command", ""))
    elif path is not None:
        text = str(path)
    else:
        text = json.dumps(arguments, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


class PermissionPrompt(Static, can_focus=True):
    """One request. ``y`` allows, ``n`` denies, ``a`` allows the tool from now on."""

    DEFAULT_CSS = """
    PermissionPrompt {
        height: auto;
        padding: 0 1;
        margin: 0 0 0 0;
        background: $warning 15%;
        border-left: thick $warning;
        &:focus { background: $warning 30%; }
    }
    """
    BINDINGS = [
        Binding("y", "answer('allow')", "Allow"),
        Binding("n", "answer('deny')", "Deny"),
        Binding("a", "answer('always')", "Always allow"),
    ]

    class Answered(Message):
        """The user answered a request."""

        def __init__(self, session_id: str, request_id: str, decision: str) -> None:
            self.session_id = session_id
            self.request_id = request_id
            self.decision = decision
            super().__init__()

    def __init__(self, session_id: str, session_label: str, request: dict[str, Any]) -> None:
        self.session_id = session_id
        self.request_id = str(request["requestId"])
        self.tool = str(request.get("tool", "tool"))
        self.arguments = request.get("input") or {}
        content = Content.from_markup(
            "[b $warning]⚠ $label[/]: [b]$tool[/b] wants to run  [dim]$what[/dim]\n"
            "   [b]y[/b] allow   [b]n[/b] deny   [b]a[/b] always allow $tool in this session",
            label=session_label,
            tool=self.tool,
            what=describe_call(self.tool, self.arguments),
        )
        super().__init__(content, id=f"perm-{self.request_id}")

    def action_answer(self, decision: str) -> None:
        self.post_message(self.Answered(self.session_id, self.request_id, decision))


class PermissionTray(Vertical):
    """The pending requests of every session; empty and hidden when none wait."""

    DEFAULT_CSS = """
    PermissionTray { height: auto; max-height: 12; display: none; }
    PermissionTray.-active { display: block; }
    """

    def request_ids(self) -> set[str]:
        return {p.request_id for p in self.query(PermissionPrompt)}

    async def show(self, session_id: str, label: str, request: dict[str, Any]) -> bool:
        """Add a request (once); True when it is new."""
        if str(request.get("requestId")) in self.request_ids():
            return False
        prompt = PermissionPrompt(session_id, label, request)
        await self.mount(prompt)
        self.add_class("-active")
        return True

    async def drop(self, request_id: str) -> None:
        """Remove a request (answered here or elsewhere)."""
        for prompt in self.query(PermissionPrompt):
            if prompt.request_id == request_id:
                await prompt.remove()
        self.set_class(bool(self.query(PermissionPrompt)), "-active")

    async def keep_only(self, session_id: str, pending: set[str]) -> None:
        """Forget ``session_id``'s requests that are no longer pending."""
        for prompt in list(self.query(PermissionPrompt)):
            if prompt.session_id == session_id and prompt.request_id not in pending:
                await self.drop(prompt.request_id)

    def first(self) -> Widget | None:
        prompts = self.query(PermissionPrompt)
        return prompts.first() if prompts else None
