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
_CONNECTION_STYLE = {
    "connected": "$success",
    "reconnecting": "$error",
    "starting": "$warning",
    "failed": "$error",
}
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
    model: reactive[str] = reactive("")
    permission_mode: reactive[str] = reactive("auto")
    engine: reactive[str] = reactive("")  # the current session's: "builtin" or "opencode"
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

    def _fields(self, compact: bool) -> list[tuple[int, Content]]:
        """(priority, text) of each field in display order; a lower priority is dropped first."""
        status = self.session_status
        icon = _SPINNER[self._frame] if status in ("running", "starting") else "●"
        sandbox_label = "" if compact else "sandbox "
        fields: list[tuple[int, Content]] = [
            (
                90,
                Content.styled(
                    f"{icon} {status}", f"bold {_STATUS_STYLE.get(status, '$text-muted')}"
                ),
            ),
            (
                70,
                Content.assemble(
                    sandbox_label,
                    (self.sandbox_state, _SANDBOX_STYLE.get(self.sandbox_state, "$text-muted")),
                ),
            ),
            # "connected" is the normal case: the first to go when room is short.
            (
                10 if self.connection == "connected" else 85,
                Content.styled(
                    self.connection,
                    f"bold {_CONNECTION_STYLE.get(self.connection, '$text-muted')}",
                ),
            ),
        ]
        if self.model:
            # Narrow terminals lose it first (F9 still shows it).
            fields.append((5, Content.styled(self.model, "$accent")))
        if self.permission_mode != "auto":
            fields.append((75, Content.styled(self.permission_mode, "bold $warning")))
        if self.tokens is not None:
            fields.append(
                (30, Content(f"{compact_count(self.tokens)} tok{'' if compact else 'ens'}"))
            )
        if self.rate_remaining is not None:
            limit = f"/{self.rate_limit}" if self.rate_limit else ""
            low = bool(self.rate_limit and self.rate_remaining < self.rate_limit * 0.1)
            fields.append(
                (
                    80 if low else 40,
                    Content.styled(
                        f"{self.rate_remaining}{limit} req{'' if compact else ' left'}",
                        "$error" if low else "",
                    ),
                )
            )
        if self.progress:
            fields.append((80, Content.styled(self.progress, "italic $text-muted")))
        if self.engine and self.engine != "builtin":
            # Only an engine other than the default is worth the room.
            fields.append((25, Content.styled(self.engine, "$text-muted")))
        if self.mode:
            fields.append((20, Content.styled(self.mode, "$text-muted")))
        return fields

    def render(self) -> Content:
        """The fields that fit the width, most telling first: first the labels get
        shorter, then the least telling fields go (the mode, "connected", tokens),
        and a progress text that still does not fit is cut with an ellipsis."""
        width = self.content_size.width or 1_000
        for compact in (False, True):
            separator = " │ " if compact else "  │ "
            fields = self._fields(compact)
            line = Content(separator).join(text for _, text in fields)
            if line.cell_length <= width:
                return line
        for priority in sorted({p for p, _ in fields}):
            kept = [(p, text) for p, text in fields if p > priority]
            line = Content(separator).join(text for _, text in kept)
            if line.cell_length <= width or len(kept) <= 2:
                return line.truncate(width, ellipsis=True)
        return line.truncate(width, ellipsis=True)
