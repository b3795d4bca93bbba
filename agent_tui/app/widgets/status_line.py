"""The status line: session status, sandbox state, connection, tokens, rate limit."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from agent_tui.app.humanize import compact_count

_STATUS_STYLE = {
    "idle": "$success",
    "running": "$warning",
    "starting": "$warning",
    "paused": "$text-muted",
    "error": "$error",
    "terminated": "$text-muted",
}
_SANDBOX_STYLE = {
    "ready": "$success",
    "starting": "$warning",
    "resuming": "$warning",
    "pausing": "$warning",
    "paused": "$text-muted",
    "error": "$error",
}
_CONNECTION_STYLE = {"connected": "$success", "reconnecting": "$error", "starting": "$warning"}
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class StatusLine(Widget):
    """One line at the bottom of the main screen, updated by assigning its reactives."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        width: 1fr;
        background: $panel;
        color: $text;
        padding: 0 1;
    }
    """

    session_status: reactive[str] = reactive("no session")
    sandbox_state: reactive[str] = reactive("none")
    connection: reactive[str] = reactive("starting")
    tokens: reactive[int | None] = reactive(None)
    rate_remaining: reactive[int | None] = reactive(None)
    rate_limit: reactive[int | None] = reactive(None)
    progress: reactive[str] = reactive("")
    mode: reactive[str] = reactive("")
    _frame: reactive[int] = reactive(0)

    def on_mount(self) -> None:
        self._timer = self.set_interval(0.1, self._spin, pause=True)

    def _spin(self) -> None:
        self._frame = (self._frame + 1) % len(_SPINNER)

    def watch_session_status(self, status: str) -> None:
        # Only animate while something is happening: an idle app draws nothing.
        if not self.is_mounted:
            return
        if status in ("running", "starting"):
            self._timer.resume()
        else:
            self._timer.pause()

    def render(self) -> Content:
        status = self.session_status
        icon = _SPINNER[self._frame] if status in ("running", "starting") else "●"
        parts: list[str | tuple[str, str]] = [
            (f"{icon} {status}", f"bold {_STATUS_STYLE.get(status, '$text-muted')}"),
            "  │ sandbox ",
            (self.sandbox_state, _SANDBOX_STYLE.get(self.sandbox_state, "$text-muted")),
            "  │ ",
            (self.connection, f"bold {_CONNECTION_STYLE.get(self.connection, '$text-muted')}"),
        ]
        if self.tokens is not None:
            parts += ["  │ ", (f"{compact_count(self.tokens)} tokens", "")]
        if self.rate_remaining is not None:
            limit = f"/{self.rate_limit}" if self.rate_limit else ""
            low = self.rate_limit and self.rate_remaining < self.rate_limit * 0.1
            parts += ["  │ ", (f"{self.rate_remaining}{limit} req left", "$error" if low else "")]
        if self.progress:
            parts += ["  │ ", (self.progress, "italic $text-muted")]
        if self.mode:
            parts += ["  │ ", (self.mode, "$text-muted")]
        return Content.assemble(*parts)
