"""The conversation transcript: a scrolling stack of small message widgets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from agent_tui.app.widgets.agent_blocks import history_block
from agent_tui.app.widgets.chat_notice import ChatNotice, NoticeKind
from agent_tui.app.widgets.tool_call import ToolCallBlock
from agent_tui.app.widgets.user_message import UserMessage
from backend.schemas import TextBlockOut, ToolUseBlockOut

if TYPE_CHECKING:
    from agent_tui.app.widgets.assistant_message import AssistantMessage
    from backend.schemas import MessageOut


def _assistant_message_class() -> type[AssistantMessage]:
    # Imported on first use: Textual's Markdown and markdown-it cost the first
    # frame about 0.1 s, and the first frame shows no markdown.
    from agent_tui.app.widgets.assistant_message import AssistantMessage

    return AssistantMessage


# A streamed text block is cut into a new markdown widget past this many characters.
SEGMENT_CHARS = 1500


class PrunedMarker(Static):
    """Says that older messages were removed from view to keep the app fast."""

    DEFAULT_CSS = """
    PrunedMarker { color: $text-muted; text-style: italic; margin: 0 1 1 2; }
    """


class ChatView(VerticalScroll):
    """The transcript of one session.

    Methods mirror the contract's events: ``add_user``, ``stream_text`` /
    ``end_text`` (one assistant text block), ``start_tool`` / ``finish_tool``,
    ``end_turn`` and ``add_notice``. The view is anchored to the bottom while
    the user has not scrolled away.

    Layout cost grows with the number of widgets on the screen (a markdown
    message is one widget per block), so two things keep it bounded: a long
    streamed text block is cut into several markdown widgets at paragraph
    boundaries (each layout pass then re-measures only the last one), and past
    ``max_weight`` widgets the oldest messages are unmounted.
    """

    DEFAULT_CSS = """
    ChatView { height: 1fr; scrollbar-size-vertical: 1; }
    """

    def __init__(self, *, max_weight: int = 600, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_weight = max_weight
        self.pruned = 0
        self._segments: list[AssistantMessage] = []  # the open text block, in pieces
        self._sealing: set[AssistantMessage] = set()  # earlier pieces still finishing
        self._tools: dict[str, ToolCallBlock] = {}

    def on_mount(self) -> None:
        self.anchor()

    @property
    def open_text(self) -> AssistantMessage | None:
        """The markdown widget currently streaming, if any."""
        return self._segments[-1] if self._segments else None

    async def clear(self) -> None:
        """Forget the transcript (on session switch)."""
        await self._close_open_text()
        self._tools.clear()
        self.pruned = 0
        await self.remove_children()
        self.anchor()

    async def _append(self, *widgets: Widget) -> None:
        await self.mount_all(widgets)
        await self._prune()

    @staticmethod
    def _weight(widget: Widget) -> int:
        # A markdown message is one widget per block; the rest have a few children.
        return 1 + len(widget.children)

    async def _prune(self) -> None:
        children = [child for child in self.children if not isinstance(child, PrunedMarker)]
        weights = [self._weight(child) for child in children]
        total = sum(weights)
        if total <= self.max_weight:
            return
        # Remove down to three quarters in one go: each removal costs a reflow.
        doomed: list[Widget] = []
        for child, weight in zip(children, weights, strict=True):
            if total <= self.max_weight * 3 // 4 or child in self._segments:
                break
            doomed.append(child)
            total -= weight
        for widget in doomed:
            if isinstance(widget, ToolCallBlock):
                self._tools.pop(widget.tool_id, None)
        self.pruned += len(doomed)
        await self.remove_children(doomed)
        marker = self.query(PrunedMarker)
        text = f"{self.pruned} earlier items hidden to keep the app responsive"
        if marker:
            marker.first().update(text)
        else:
            await self.mount(PrunedMarker(text, markup=False), before=0)

    async def _seal(self, segment: AssistantMessage) -> None:
        try:
            await segment.finish()
        finally:
            self._sealing.discard(segment)

    @property
    def settled(self) -> bool:
        """True when no markdown is streaming or still being finished."""
        return not self._segments and not self._sealing

    async def _close_open_text(self, full_text: str | None = None) -> None:
        segments = self._segments
        if not segments:
            return
        streamed = "".join(segment.streamed_text for segment in segments)
        try:
            # Earlier pieces were sealed (and finish) as the next one started.
            await segments[-1].finish()
        finally:
            # Only now: until the last piece is on screen the view is not settled.
            self._segments = []
        if full_text is not None and full_text != streamed:
            # Missed fragments (joined mid-block): show the block's whole text instead.
            await segments[0].update(full_text)
            await self.remove_children(segments[1:])

    @staticmethod
    def _cut_point(text: str, fragment: str) -> int | None:
        """Where in ``fragment`` one markdown widget may end and the next begin, if anywhere.

        Only after a blank line outside a code fence, and not before something
        that continues the previous block (an indented line, a list item, a
        quote, a table row), so the pieces render exactly as the whole would.
        """
        if len(text) < SEGMENT_CHARS:
            return None
        joined = text + fragment
        cut = joined.rfind("\n\n", max(0, len(text) - 2))
        # The cut needs a character after it, to know what starts the next block.
        if cut < 0 or cut + 2 >= len(joined) or joined[cut + 2] in " \t\n-*+>|0123456789":
            return None
        head = joined[: cut + 2]
        fences = sum(1 for line in head.splitlines() if line.lstrip().startswith(("```", "~~~")))
        if fences % 2:
            return None
        return cut + 2 - len(text)

    # ---- the transcript's vocabulary

    async def show_history(self, messages: list[MessageOut], *, more: bool = False) -> None:
        """Render stored messages as finished widgets, in one mount; ``more``: older ones exist."""
        widgets: list[Widget] = []
        if more:
            widgets.append(PrunedMarker("Earlier messages are not shown", markup=False))
        for message in messages:
            if message.role == "user":
                widgets.append(UserMessage(message.content, message_id=message.id))
                continue
            # A stored assistant message is a whole turn; its blocks hold the text and
            # tool calls in the order they streamed. A server without blocks gives
            # the text, then the tool calls.
            blocks = message.blocks or [
                *([TextBlockOut(text=message.content)] if message.content else []),
                *(ToolUseBlockOut(**call.model_dump()) for call in message.tool_calls),
            ]
            for item in blocks:
                if isinstance(item, TextBlockOut):
                    if item.text.strip():
                        widgets.append(_assistant_message_class()(item.text, message_id=message.id))
                    continue
                if not isinstance(item, ToolUseBlockOut):
                    widgets.append(history_block(item))  # thinking, compaction
                    continue
                block = ToolCallBlock(
                    item.id,
                    item.name,
                    item.arguments,
                    finished=item.result is not None or item.is_error,
                    result=item.result,
                    is_error=item.is_error,
                )
                self._tools[item.id] = block
                widgets.append(block)
            if message.stop_reason == "interrupted":
                widgets.append(ChatNotice("Interrupted: the turn was stopped.", "interrupted"))
            elif message.stop_reason == "error":
                widgets.append(ChatNotice("This turn failed.", "error"))
        if widgets:
            await self.mount_all(widgets)
        self.scroll_end(animate=False, immediate=True)

    async def add_user(self, text: str, *, message_id: str | None = None) -> None:
        """A user message."""
        await self._close_open_text()
        await self._append(UserMessage(text, message_id=message_id))

    async def add_assistant(self, text: str, *, message_id: str | None = None) -> None:
        """A finished assistant text block (from history)."""
        if text.strip():
            await self._append(_assistant_message_class()(text, message_id=message_id))

    async def stream_text(self, fragment: str, *, message_id: str | None = None) -> None:
        """A fragment of the current assistant text block; opens one if needed."""
        segment = self.open_text
        if segment is not None:
            cut = self._cut_point(segment.streamed_text, fragment)
            if cut is not None:
                head, fragment = fragment[:cut], fragment[cut:]
                await segment.write(head)
                # The sealed piece finishes in a worker (a task of its own): the
                # stream goes on meanwhile. Not on the piece's own message loop, as
                # its final append needs that loop free.
                self._sealing.add(segment)
                self.run_worker(self._seal(segment), group="seal", exit_on_error=False)
                segment = None
        if segment is None:
            segment = _assistant_message_class()(message_id=message_id)
            self._segments.append(segment)
            await self._append(segment)
        await segment.write(fragment)

    async def end_text(self, full_text: str, *, message_id: str | None = None) -> None:
        """Close the current text block; ``full_text`` is its whole text."""
        if not self._segments:
            # We joined after the block's fragments (or missed them): show it whole.
            await self.add_assistant(full_text, message_id=message_id)
            return
        await self._close_open_text(full_text)

    async def start_tool(self, tool_id: str, name: str, arguments: dict[str, Any]) -> ToolCallBlock:
        """A tool call began: a collapsed block with a running status."""
        await self._close_open_text()
        block = self._tools.get(tool_id)
        if block is None:
            block = ToolCallBlock(tool_id, name, arguments)
            self._tools[tool_id] = block
            await self._append(block)
        return block

    async def finish_tool(
        self,
        tool_id: str,
        result: str | None,
        *,
        is_error: bool,
        name: str = "tool",
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """A tool call finished; mounts the block first if its start was not seen."""
        block = self._tools.get(tool_id) or await self.start_tool(tool_id, name, arguments or {})
        await block.set_result(result, is_error=is_error)

    async def end_turn(self, stop_reason: str | None) -> None:
        """The assistant's turn ended: close any open block and say why if it is unusual."""
        await self._close_open_text()
        if stop_reason == "interrupted":
            await self.add_notice("Interrupted: the turn was stopped.", "interrupted")
        elif stop_reason == "max_tokens":
            await self.add_notice("The reply hit the model's output limit.", "info")
        elif stop_reason == "max_tool_rounds":
            await self.add_notice("Stopped after too many tool rounds.", "info")
        elif stop_reason == "refusal":
            await self.add_notice("The model declined to answer.", "info")

    async def append(self, widget: Widget) -> None:
        """Add any widget at the end of the transcript (closing the open text first)."""
        await self._close_open_text()
        await self._append(widget)

    def tool_block(self, tool_id: str) -> ToolCallBlock | None:
        """The block of a tool call still in the transcript."""
        return self._tools.get(tool_id)

    async def add_notice(self, text: str, kind: NoticeKind = "info") -> None:
        """A one-line notice (errors, interruptions)."""
        await self._close_open_text()
        await self._append(ChatNotice(text, kind))
