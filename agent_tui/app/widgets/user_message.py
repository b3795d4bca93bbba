"""A message the user sent."""

from __future__ import annotations

from textual.widgets import Static


class UserMessage(Static):
    """The user's prompt, shown verbatim (no markup, no markdown)."""

    DEFAULT_CSS = """
    UserMessage {
        margin: 0 1 1 1;
        padding: 0 1;
        border-left: thick $primary;
        background: $primary 10%;
        color: $text;
    }
    """

    def __init__(self, text: str, *, message_id: str | None = None) -> None:
        super().__init__(text, markup=False, classes="user")
        self.message_id = message_id
