"""First run in embedded mode: no model key configured yet, so ask for one."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

EXPLANATION = """\
agent-tui runs the agent on this machine (embedded mode) and needs a model \
API. No Anthropic API key was found: neither ANTHROPIC_API_KEY nor a saved key.

Paste a key below; for an Anthropic-compatible API, also give its base URL \
(ANTHROPIC_BASE_URL; any placeholder key if it needs none). Both are saved to \
your config file, readable only by you, so you are asked once."""


class FirstRunScreen(Screen[tuple[str, str] | None]):
    """Dismisses with ``(api_key, base_url)`` (the URL may be empty) or None to quit."""

    CSS_PATH = "first_run.tcss"
    BINDINGS = [Binding("escape", "quit_app", "Quit")]
    AUTO_FOCUS = "#anthropic-key"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="first-run"):
            with VerticalScroll(classes="dialog"):
                yield Label("Set up the model", classes="dialog-title")
                yield Static(EXPLANATION, classes="dialog-body", markup=False)
                yield Label("Anthropic API key", classes="field-label")
                yield Input(placeholder="sk-ant-…", password=True, id="anthropic-key", compact=True)
                yield Label("Base URL of a compatible API (optional)", classes="field-label")
                yield Input(placeholder="https://…", id="anthropic-base-url", compact=True)
                yield Static("", id="first-run-error", classes="dialog-error")
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Quit", id="quit", compact=True)
                    yield Button("Save and start", id="save", variant="primary", compact=True)
        yield Footer()

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        key = self.query_one("#anthropic-key", Input).value.strip()
        url = self.query_one("#anthropic-base-url", Input).value.strip().rstrip("/")
        error = self.query_one("#first-run-error", Static)
        if not key:
            error.update("Enter an API key (or press Esc to quit).")
            return
        if url and not url.startswith(("http://", "https://")):
            error.update("The base URL must start with http:// or https://.")
            return
        if any(c.isspace() for c in key) or (not url and len(key) < 8):
            error.update("That does not look like an API key (it has spaces or is too short).")
            return
        self.dismiss((key, url))

    @on(Button.Pressed, "#quit")
    def action_quit_app(self) -> None:
        self.dismiss(None)
