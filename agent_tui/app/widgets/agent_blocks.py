"""Transcript widgets for issue 9's events: extended thinking, live tool output
and context compaction. ``AgentBlocks`` routes those events to them, so the chat
pane needs one call per event type."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from textual.widget import Widget
from textual.widgets import Collapsible, Static

from agent_tui.app.humanize import compact_count
from agent_tui.app.widgets.chat_notice import ChatNotice

if TYPE_CHECKING:
    from agent_tui.app.widgets.chat_view import ChatView
    from agent_tui.app.widgets.tool_call import ToolCallBlock

# Thinking and live output are shown as their tail: enough to follow, bounded to draw.
THINKING_TAIL_CHARS = 4000
LIVE_TAIL_LINES = 12
LIVE_TAIL_CHARS = 2000


def tail(text: str, *, lines: int, chars: int) -> str:
    """The last ``lines`` lines (at most ``chars`` characters) of ``text``."""
    kept = "\n".join(text.splitlines()[-lines:])
    return kept[-chars:]


class ThinkingBlock(Collapsible):
    """The model's extended thinking: collapsed and dimmed, streamed while it lasts."""

    DEFAULT_CSS = """
    ThinkingBlock {
        margin: 0 1 1 2;
        padding: 0;
        border: none;
        border-left: tall $foreground 20%;
        background: $surface;
        height: auto;
        color: $text-muted;
        text-style: italic;
        CollapsibleTitle { color: $text-muted; }
        Contents { padding: 0 1 0 2; }
    }
    """

    def __init__(self, text: str = "", *, finished: bool = False) -> None:
        self.text = text
        self.finished = finished
        self._body = Static(text[-THINKING_TAIL_CHARS:], markup=False, classes="thinking-text")
        super().__init__(self._body, title=self._heading(), collapsed=True)

    def _heading(self) -> str:
        words = len(self.text.split())
        return f"✻ Thought ({words} words)" if self.finished else f"✻ Thinking… ({words} words)"

    def add(self, fragment: str) -> None:
        """More thinking arrived."""
        self.text += fragment
        self._body.update(self.text[-THINKING_TAIL_CHARS:])
        self.title = self._heading()

    def finish(self, text: str) -> None:
        """The thinking block is complete; ``text`` is all of it."""
        self.text, self.finished = text, True
        self._body.update(text[-THINKING_TAIL_CHARS:])
        self.title = self._heading()


class LiveOutput(Static):
    """The tail of a running command's stdout/stderr and its elapsed time, inside
    its tool block; removed when the command's result arrives."""

    DEFAULT_CSS = """
    LiveOutput { color: $text-muted; padding: 0 0 0 2; height: auto; }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False)
        self.output = ""
        self.started = time.monotonic()

    def add(self, text: str) -> None:
        self.output = (self.output + text)[-LIVE_TAIL_CHARS * 4 :]
        self.refresh_view()

    def refresh_view(self) -> None:
        elapsed = time.monotonic() - self.started
        shown = tail(self.output, lines=LIVE_TAIL_LINES, chars=LIVE_TAIL_CHARS)
        self.update(f"{shown}\n⏱ {elapsed:.0f}s" if shown else f"⏱ {elapsed:.0f}s")


def compaction_text(data: dict[str, Any]) -> str:
    """The notice of a compaction (``context.compacted`` data, camelCase)."""
    before = int(data.get("tokensBefore") or 0)
    after = int(data.get("tokensAfter") or 0)
    how = "by the API" if data.get("method") == "api" else "by a summary"
    return (
        f"Context compacted {how}: {compact_count(before)} → {compact_count(after)} tokens "
        f"({compact_count(max(0, before - after))} saved). The model sees the summary; "
        "the transcript above is kept."
    )


def history_block(item: Any) -> Widget:
    """The widget of a stored ``thinking`` block or ``compaction`` mark."""
    if getattr(item, "type", "") == "thinking":
        return ThinkingBlock(item.text, finished=True)
    return ChatNotice(
        compaction_text(
            {
                "method": item.method,
                "tokensBefore": item.tokens_before,
                "tokensAfter": item.tokens_after,
            }
        ),
        "info",
    )


class AgentBlocks:
    """Applies thinking, ``tool.output`` and ``context.compacted`` events to a ``ChatView``."""

    def __init__(self, chat: ChatView) -> None:
        self.chat = chat
        self.thinking: ThinkingBlock | None = None
        self.live: dict[str, LiveOutput] = {}

    def reset(self) -> None:
        self.thinking = None
        self.live.clear()

    async def on_thinking(self, data: dict[str, Any]) -> None:
        content = str(data.get("content") or "")
        if data.get("isPartial"):
            if self.thinking is None:
                self.thinking = ThinkingBlock()
                await self.chat.append(self.thinking)
            self.thinking.add(content)
            return
        if self.thinking is None:
            await self.chat.append(ThinkingBlock(content, finished=True))
        else:
            self.thinking.finish(content)
        self.thinking = None

    async def on_tool_output(self, data: dict[str, Any], block: ToolCallBlock | None) -> None:
        tool_id = str(data.get("toolId") or "")
        if block is None:
            return
        live = self.live.get(tool_id)
        if live is None:
            live = LiveOutput()
            self.live[tool_id] = live
            contents = block.query_one(Collapsible.Contents)
            await contents.mount(live)
            block.collapsed = False  # show it running; the result collapses it again
        live.add(str(data.get("text") or ""))

    async def on_tool_done(self, tool_id: str, block: ToolCallBlock | None) -> None:
        live = self.live.pop(tool_id, None)
        if live is not None:
            await live.remove()
            if block is not None:
                block.collapsed = True

    def tick(self) -> None:
        """Refresh elapsed times of running commands."""
        for live in self.live.values():
            live.refresh_view()

    async def on_compacted(self, data: dict[str, Any]) -> None:
        await self.chat.append(ChatNotice(compaction_text(data), "info"))
