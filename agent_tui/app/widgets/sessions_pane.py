"""The sessions pane: every session with its title, status and last activity."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from agent_tui.app.humanize import ago

if TYPE_CHECKING:
    from backend.schemas import SessionOut

STATUS_ICON = {
    "starting": ("◌", "$warning"),
    "idle": ("○", "$success"),
    "running": ("●", "$warning"),
    "paused": ("⏸", "$text-muted"),
    "error": ("✘", "$error"),
    "terminated": ("✕", "$text-muted"),
}


# Replaces the status icon of a session whose turn finished while it was not on screen.
FINISHED_MARK = "✔"


def session_title(session: SessionOut) -> str:
    """The title to show: the session's own, else a short form of its id."""
    return session.title or f"Session {session.id[:8]}"


class SessionsPane(Vertical):
    """The list of sessions; posts ``Selected`` when the user opens one.

    A session whose turn finished while another one was on screen is marked
    (``finished``) until it is opened: the app makes no sound, this is the signal.
    """

    DEFAULT_CSS = """
    SessionsPane {
        width: 34;
        height: 1fr;
        border-right: tall $panel;
        & > #sessions-heading { padding: 0 1; text-style: bold; color: $text-accent; width: 1fr; }
        & > OptionList { height: 1fr; border: none; padding: 0; background: transparent; }
        & > #sessions-empty { padding: 1 1; color: $text-muted; width: 1fr; }
    }
    """

    class Selected(Message):
        """The user chose a session to open."""

        def __init__(self, session_id: str) -> None:
            self.session_id = session_id
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sessions: dict[str, SessionOut] = {}
        self.current_id: str | None = None
        self.finished: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Label("Sessions", id="sessions-heading")
        yield OptionList(id="session-list")
        yield Label(
            "No sessions yet. Ctrl+N starts one, or just type a message.", id="sessions-empty"
        )

    @property
    def option_list(self) -> OptionList:
        return self.query_one("#session-list", OptionList)

    def _prompt(self, session: SessionOut) -> Content:
        icon, style = STATUS_ICON.get(session.status, ("?", "$text-muted"))
        current = session.id == self.current_id
        title = "[b $text-accent]$title[/]" if current else "$title"
        # A session waiting for the user's approval of a tool call says so.
        waiting = " [b $warning]⚠ approve[/]" if session.pending_permission_count else ""
        if session.id in self.finished:
            icon, style, title = FINISHED_MARK, "$accent", "[b]$title[/]"
        return Content.from_markup(
            f"[bold {style}]{icon}[/] {title}{waiting}\n  [dim]$status · $when[/dim]",
            title=session_title(session),
            status=session.status,
            when=ago(session.last_activity_at),
        )

    def show_sessions(self, sessions: Iterable[SessionOut]) -> None:
        """Replace the list, keeping the highlight on the same session when possible."""
        option_list = self.option_list
        highlighted = option_list.highlighted
        highlighted_id = (
            option_list.get_option_at_index(highlighted).id
            if highlighted is not None
            else self.current_id
        )
        self.sessions = {session.id: session for session in sessions}
        option_list.set_options(Option(self._prompt(s), id=s.id) for s in self.sessions.values())
        self.query_one("#sessions-empty").display = not self.sessions
        option_list.display = bool(self.sessions)
        target = highlighted_id if highlighted_id in self.sessions else self.current_id
        if target in self.sessions:
            option_list.highlighted = option_list.get_option_index(target)

    def update_session(self, session: SessionOut) -> None:
        """Refresh one row (status or title changed), adding it at the top if it is new."""
        if session.id not in self.sessions:
            self.show_sessions([session, *self.sessions.values()])
            return
        self.sessions[session.id] = session
        self.option_list.replace_option_prompt(session.id, self._prompt(session))

    def set_status(self, session_id: str, status: str) -> None:
        """Change one row's status without asking the server."""
        session = self.sessions.get(session_id)
        if session is not None and session.status != status:
            self.update_session(session.model_copy(update={"status": status}))

    def mark_finished(self, session_id: str) -> None:
        """Mark a session whose turn ended out of sight (cleared when it is opened)."""
        self.finished.add(session_id)
        if session_id in self.sessions:
            self.option_list.replace_option_prompt(
                session_id, self._prompt(self.sessions[session_id])
            )

    def mark_current(self, session_id: str | None) -> None:
        """Show which session the chat pane is following."""
        previous, self.current_id = self.current_id, session_id
        if session_id is not None:
            self.finished.discard(session_id)
        for sid in (previous, session_id):
            if sid in self.sessions:
                self.option_list.replace_option_prompt(sid, self._prompt(self.sessions[sid]))
        if session_id in self.sessions:
            self.option_list.highlighted = self.option_list.get_option_index(session_id)

    @property
    def highlighted_id(self) -> str | None:
        """The session under the list's cursor."""
        index = self.option_list.highlighted
        return None if index is None else self.option_list.get_option_at_index(index).id

    @on(OptionList.OptionSelected, "#session-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Selected(event.option.id))
