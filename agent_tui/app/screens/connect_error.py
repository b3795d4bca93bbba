"""The backend could not be started or reached: say why, offer to retry."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

from agent_tui.app.api_errors import describe, error_code

_KEY_HINT = "Give a key with --api-key aa_live_…, AGENT_TUI_API_KEY, or a saved profile."
_EMBEDDED_HINT = (
    "The embedded backend keeps its data under the agent-tui data directory and logs to "
    "agent-tui.log there. Check that the disk is writable and the config file is valid JSON."
)


def explain(mode: str, exc: BaseException) -> tuple[str, str]:
    """What failed, and what to do about it when the message does not already say so."""
    message = describe(exc)
    code = error_code(exc)
    if code in ("INVALID_API_KEY", "MISSING_API_KEY"):
        return message, _KEY_HINT
    if code is not None:
        # Connection errors and the server's own errors carry their advice.
        return message, ""
    if mode == "embedded" and "already running" not in message:
        return message, _EMBEDDED_HINT
    return message, ""


class ConnectErrorScreen(ModalScreen[bool]):
    """Dismisses with True to retry, False to quit."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Quit"), Binding("r", "dismiss(True)", "Retry")]

    def __init__(self, mode: str, label: str, message: str, hint: str = "") -> None:
        super().__init__()
        self.mode = mode
        self.label = label
        self.message = message
        self.hint = hint

    @classmethod
    def for_error(cls, mode: str, label: str, exc: BaseException) -> ConnectErrorScreen:
        """The screen for ``exc``: its message, and a hint only when it adds something."""
        return cls(mode, label, *explain(mode, exc))

    def compose(self) -> ComposeResult:
        title = (
            "Cannot start the embedded backend"
            if self.mode == "embedded"
            else f"Cannot connect ({self.label})"
        )
        # The dialog's own keys, over the footer of the screen behind it.
        yield Footer(compact=True)
        with Vertical(classes="dialog", id="connect-error"):
            yield Label(title, classes="dialog-title", markup=False)
            yield Static(
                self.message, classes="dialog-error", markup=False, id="connect-error-message"
            )
            if self.hint:
                yield Static(self.hint, classes="dialog-hint", markup=False)
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
