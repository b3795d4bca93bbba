"""Create an API key: name, scopes, environment and expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    Footer,
    Input,
    Label,
    RadioButton,
    RadioSet,
    Select,
    Static,
)

EXPIRY_CHOICES = [
    ("Never", 0),
    ("In 7 days", 7),
    ("In 30 days", 30),
    ("In 90 days", 90),
    ("In 1 year", 365),
]


@dataclass(frozen=True)
class KeyRequest:
    """What the user asked for; ``expires_at`` None means the key never expires."""

    name: str
    scopes: list[str]
    environment: str
    expires_at: datetime | None


class KeyCreateScreen(ModalScreen[KeyRequest | None]):
    """The new-key form; dismisses with a ``KeyRequest`` or None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        # The dialog's own keys, over the footer of the screen behind it.
        yield Footer(compact=True)
        with Vertical(classes="dialog", id="key-create"):
            yield Label("New API key", classes="dialog-title")
            yield Label("Name", classes="field-label")
            yield Input(placeholder="e.g. laptop, CI", max_length=200, id="key-name", compact=True)
            yield Label("Scopes", classes="field-label")
            with Horizontal(classes="field-row"):
                yield Checkbox("sessions", value=True, id="scope-sessions", compact=True)
                yield Checkbox("admin (manage keys)", value=False, id="scope-admin", compact=True)
            yield Label("Environment", classes="field-label")
            with RadioSet(id="key-environment", compact=True):
                yield RadioButton("live", value=True, id="env-live", compact=True)
                yield RadioButton("test", id="env-test", compact=True)
            yield Label("Expires", classes="field-label")
            yield Select(EXPIRY_CHOICES, value=0, allow_blank=False, id="key-expiry", compact=True)
            yield Static("", classes="dialog-error", id="key-create-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create key", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#key-name", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#create")
    def _create(self) -> None:
        name = self.query_one("#key-name", Input).value.strip()
        scopes = [
            scope
            for scope, widget_id in (("sessions", "#scope-sessions"), ("admin", "#scope-admin"))
            if self.query_one(widget_id, Checkbox).value
        ]
        error = self.query_one("#key-create-error", Static)
        if not name:
            error.update("Give the key a name, so you know later what uses it.")
            self.query_one("#key-name", Input).focus()
            return
        if not scopes:
            error.update("Pick at least one scope.")
            return
        environment = "test" if self.query_one("#env-test", RadioButton).value else "live"
        days = self.query_one("#key-expiry", Select).value
        expires_at = (
            datetime.now(UTC) + timedelta(days=int(days))
            if isinstance(days, int) and days
            else None
        )
        self.dismiss(KeyRequest(name, scopes, environment, expires_at))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
