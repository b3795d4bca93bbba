"""A one-field dialog: ask for a line of text (a session's new title)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label


class TextInputScreen(ModalScreen[str | None]):
    """Dismisses with the entered text (stripped, non-empty) or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(
        self, title: str, *, value: str = "", placeholder: str = "", max_length: int = 200
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.placeholder = placeholder
        self.max_length = max_length

    def compose(self) -> ComposeResult:
        # The dialog's own keys, over the footer of the screen behind it.
        yield Footer(compact=True)
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            yield Input(
                self.value, placeholder=self.placeholder, max_length=self.max_length, id="text"
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        text = self.query_one(Input).value.strip()
        if text:
            self.dismiss(text)
        else:
            self.notify("Type something first, or press Esc to cancel.", severity="warning")

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
