"""A new key, shown this once, with a copy action and a warning."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static


class KeyCreatedScreen(ModalScreen[None]):
    """Shows the full key; it cannot be shown again after this closes."""

    BINDINGS = [
        Binding("c", "copy", "Copy key"),
        Binding("escape", "dismiss(None)", "Done"),
    ]

    def __init__(self, name: str, key: str, scopes: list[str]) -> None:
        super().__init__()
        self.key_name = name
        self.key = key
        self.scopes = scopes

    def compose(self) -> ComposeResult:
        # The dialog's own keys, over the footer of the screen behind it.
        yield Footer(compact=True)
        with Vertical(classes="dialog", id="key-created"):
            yield Label(f"Key “{self.key_name}” created", classes="dialog-title", markup=False)
            yield Static(
                "⚠ Copy this key now. It is shown only this once: only its hash is stored, "
                "so it cannot be recovered later. Anyone holding it can act as you.",
                classes="dialog-warning",
                markup=False,
            )
            yield Static(self.key, id="new-key", markup=False)
            yield Static(f"scopes: {', '.join(self.scopes)}", classes="dialog-hint", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Copy to clipboard", id="copy", variant="primary")
                yield Button("Done", id="done")

    def on_mount(self) -> None:
        self.query_one("#copy", Button).focus()

    @on(Button.Pressed, "#copy")
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.key)
        self.notify(
            "The key is on the clipboard (if your terminal allows OSC 52). It is also selectable on screen."
        )

    @on(Button.Pressed, "#done")
    def _done(self) -> None:
        self.dismiss(None)
