"""``AgentApp``: the thin App that wires the connection, the screens and the palette."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from agent_tui.app.api_errors import describe
from agent_tui.app.prompt_history import PromptHistory
from agent_tui.app.screens.main import MainScreen
from agent_tui.app.theme import DEFAULT_THEME, THEMES

if TYPE_CHECKING:
    from textual.command import Provider

    from agent_tui.app.connection import BackendConnection
    from agent_tui.client import AgentClient


def _session_commands() -> type[Provider]:
    # A callable, not the class: the palette (textual.command) loads when first opened.
    from agent_tui.app.commands import SessionCommands

    return SessionCommands


class AgentApp(App[int]):
    """The agent-tui app. ``connection`` decides embedded or remote; the screens do the rest."""

    CSS_PATH = Path(__file__).parent / "app.tcss"
    TITLE = "agent-tui"
    COMMANDS = App.COMMANDS | {_session_commands}
    # Every screen gets -short below 30 rows: dialogs tighten so that 24 rows hold them.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    def __init__(
        self,
        connection: BackendConnection,
        *,
        open_last_session: bool = True,
        typed_ahead: list[str] | None = None,
        history_path: Path | None = None,
    ) -> None:
        """``open_last_session``: at launch, show the most recent session (else a new
        one). ``typed_ahead``: messages sent before the app had the terminal.
        ``history_path``: where ↑ in the prompt finds earlier runs' prompts."""
        super().__init__()
        self.connection = connection
        self.open_last_session = open_last_session
        self.typed_ahead = list(typed_ahead or [])
        self.client: AgentClient | None = None
        # What ↑ in the prompt recalls from earlier runs (None: this run only).
        self.prompt_history = PromptHistory(history_path) if history_path is not None else None
        for theme in THEMES:
            self.register_theme(theme)
        self.theme = DEFAULT_THEME

    @property
    def main_screen(self) -> MainScreen:
        """The main screen (always at the bottom of the stack)."""
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    async def on_mount(self) -> None:
        await self.push_screen(MainScreen())
        # Start the backend once the first frame is out: loading it competes for the CPU.
        self.call_after_refresh(self.connect)

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect(self) -> None:
        """Start (embedded) or reach (remote) the backend, asking the user what is missing."""
        from agent_tui.app.screens.connect_error import ConnectErrorScreen, explain
        from agent_tui.app.screens.first_run import FirstRunScreen

        connection = self.connection
        main = self.main_screen
        if connection.needs_model_setup():
            answer = await self.push_screen_wait(FirstRunScreen())
            if answer is None:
                self.exit(0)
                return
            api_key, base_url = answer
            try:
                where = connection.save_model_setup(api_key, base_url)
            except Exception as exc:
                self.notify(f"Could not save the config: {describe(exc)}", severity="error")
            else:
                self.notify(f"Saved to {where} (readable only by you).", title="Model configured")
        label = (
            "starting the embedded backend…"
            if connection.mode == "embedded"
            else f"connecting to {connection.label}…"
        )
        main.backend_starting(label)
        connection.on_notice = lambda text, severity: self.notify(text, severity=severity)  # type: ignore[arg-type]
        try:
            self.client = await connection.open()
        except Exception as exc:
            reason, hint = explain(connection.mode, exc)
            main.backend_failed(reason)
            waiting = len(main.chat.outbox.texts)
            if waiting:
                reason += (
                    f"\n\n{waiting} message{'s' if waiting > 1 else ''} waiting to be sent: "
                    "kept, and sent once the backend is ready (Retry)."
                )
            retry = await self.push_screen_wait(
                ConnectErrorScreen(connection.mode, connection.label, reason, hint)
            )
            if retry:
                self.connect()
            else:
                self.exit(return_code=1)
            return
        main.backend_ready(connection.label, connection.limitations())

    async def on_unmount(self) -> None:
        # Stop the embedded backend (its process) with the app.
        await self.connection.close()

    def action_keys(self) -> None:
        """Open the API keys screen."""
        from agent_tui.app.screens.keys import KeysScreen

        if self.client is None:
            self.notify("Not connected to the backend yet.", severity="warning")
            return
        if not isinstance(self.screen, KeysScreen):
            self.push_screen(KeysScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        palette_commands = getattr(screen, "palette_commands", None)
        if palette_commands is not None:
            yield from palette_commands()
