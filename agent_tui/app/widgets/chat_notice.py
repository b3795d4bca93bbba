"""A one-line notice inside the conversation: an error, an interruption, a hint."""

from __future__ import annotations

from typing import Literal

from textual.widgets import Static

NoticeKind = Literal["error", "interrupted", "info"]

_ICONS = {"error": "✘", "interrupted": "⏹", "info": "·"}


class ChatNotice(Static):
    """A short line between messages; ``kind`` picks its colour."""

    DEFAULT_CSS = """
    ChatNotice {
        margin: 0 1 1 2;
        color: $text-muted;
        &.-error { color: $error; text-style: bold; }
        &.-interrupted { color: $warning; text-style: bold; }
    }
    """

    def __init__(self, text: str, kind: NoticeKind = "info") -> None:
        super().__init__(f"{_ICONS[kind]} {text}", markup=False, classes=f"-{kind}")
        self.kind = kind
