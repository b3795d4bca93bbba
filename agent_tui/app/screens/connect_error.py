"""The backend could not be started or reached: say why, offer to retry."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

_HINTS = {
    "remote": (
        "Check the server URL (agent-tui --remote http://host:8787) and the API key "
        "(--api-key aa_live_…, AGENT_TUI_API_KEY, or a saved profile)."
    ),
    "embedded": (
        "The embedded backend keeps its data under the agent-tui data directory and logs to "
        "agent-tui.log there. Check that the disk is writable and the config file is valid JSON."
    ),
}


class ConnectErrorScreen(ModalScreen[bool]):
    """Dismisses with True to retry, False to quit."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Quit"), Binding("r", "dismiss(True)", "Retry")]

    def __init__(self, mode: str, label: str, message: str) -> None:
        super().__init__()
        self.mode = mode
        self.label = label
        self.message = message

    def compose(self) -> ComposeResult:
        title = (
            "Cannot start the embedded backend"
            if self.mode == "embedded"
            else f"Cannot connect ({self.label})"
        )
        with Vertical(classes="dialog", id="connect-error"):
            yield Label(title, classes="dialog-title", markup=False)
            yield Static(
                self.message, classes="dialog-error", markup=False, id="connect-error-message"
            )
            yield Static(_HINTS.get(self.mode, ""), classes="dialog-hint", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Quit", id="quit")
                yield Button("Retry", id="retry", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#retry", Button).focus()

    @on(Button.Pressed, "#retry")
    def _retry(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#quit")
    def _quit(self) -> None:
        self.dismiss(False)
