"""The prompt: a multi-line editor where Enter sends and Up recalls history."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import events
from textual.message import Message
from textual.widgets import TextArea

if TYPE_CHECKING:
    from agent_tui.app.prompt_history import PromptHistory


class PromptArea(TextArea):
    """Multi-line input for messages to the agent.

    Enter posts ``Submitted``; Shift+Enter or Ctrl+J inserts a new line (many
    terminals cannot tell Shift+Enter from Enter, Ctrl+J always works). Up on
    the first line walks back through sent messages, Down on the last line
    walks forward again and finally restores the draft. With the app's
    ``prompt_history``, the history starts with earlier runs' prompts.
    """

    DEFAULT_CSS = """
    PromptArea {
        height: auto;
        min-height: 3;
        max-height: 10;
        border: tall $primary 40%;
        &:focus { border: tall $primary; }
        .text-area--cursor-line { background: transparent; }
    }
    """

    class Submitted(Message):
        """The user pressed Enter on a non-empty prompt."""

        def __init__(self, prompt: PromptArea, text: str) -> None:
            self.prompt = prompt
            self.text = text
            super().__init__()

        @property
        def control(self) -> PromptArea:
            return self.prompt

    def __init__(
        self, *, placeholder: str = "", id: str | None = None, history_size: int = 200
    ) -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            highlight_cursor_line=False,
            placeholder=placeholder,
        )
        self.sent_history: list[str] = []
        self.history_size = history_size
        self._history_index: int | None = None
        self._draft = ""
        # Set by the chat pane: Tab calls it; True means it completed something.
        self.complete: Callable[[], bool] | None = None

    async def _on_key(self, event: events.Key) -> None:
        # Runs before TextArea._on_key (MRO dispatch); prevent_default stops it inserting.
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.submit()
        elif event.key in ("shift+enter", "ctrl+j"):
            event.stop()
            event.prevent_default()
            self.insert("\n")
        elif event.key == "tab" and self.complete is not None and self.complete():
            event.stop()
            event.prevent_default()

    def on_mount(self) -> None:
        store = self._store
        if store is not None:
            self.sent_history = store.load()[-self.history_size :]

    @property
    def _store(self) -> PromptHistory | None:
        # Kept by the app so that every prompt of a run shares one file.
        return getattr(self.app, "prompt_history", None)

    def submit(self) -> None:
        """Post the text (if any) and remember it in the history; the caller clears it."""
        text = self.text
        if not text.strip():
            return
        self.post_message(self.Submitted(self, text))

    def remember(self, text: str) -> None:
        """Add a sent message to the history and clear the editor."""
        if not self.sent_history or self.sent_history[-1] != text:
            self.sent_history.append(text)
            del self.sent_history[: -self.history_size]
            if self._store is not None:
                self._store.append(text)
        self._history_index = None
        self._draft = ""
        self.clear()

    def _show(self, text: str, *, at_end: bool) -> None:
        self.load_text(text)
        self.move_cursor(self.document.end if at_end else (0, len(self.document[0])))

    def action_cursor_up(self, select: bool = False) -> None:
        if select or not self.cursor_at_first_line or not self.sent_history:
            super().action_cursor_up(select)
            return
        if self._history_index is None:
            self._draft = self.text
            self._history_index = len(self.sent_history)
        if self._history_index == 0:
            return
        self._history_index -= 1
        self._show(self.sent_history[self._history_index], at_end=False)

    def action_cursor_down(self, select: bool = False) -> None:
        if select or not self.cursor_at_last_line or self._history_index is None:
            super().action_cursor_down(select)
            return
        self._history_index += 1
        if self._history_index >= len(self.sent_history):
            self._history_index = None
            self._show(self._draft, at_end=True)
        else:
            self._show(self.sent_history[self._history_index], at_end=True)
