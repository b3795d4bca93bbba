"""The main screen: sessions on the left, the chat on the right, a status line below."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header

from agent_tui.app import slash
from agent_tui.app.api_errors import describe, error_code
from agent_tui.app.screens.confirm import ConfirmScreen
from agent_tui.app.screens.model_picker import ModelPickerScreen
from agent_tui.app.screens.text_input import TextInputScreen
from agent_tui.app.widgets.chat_pane import ChatPane
from agent_tui.app.widgets.connection_banner import ConnectionBanner
from agent_tui.app.widgets.outbox import WAITING_FOR_RECONNECT, WAITING_FOR_START
from agent_tui.app.widgets.permission_prompt import PermissionPrompt, PermissionTray
from agent_tui.app.widgets.sessions_pane import SessionsPane, session_title
from agent_tui.app.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from agent_tui.app.app import AgentApp
    from agent_tui.client import AgentClient, SessionHandle
    from backend.schemas import SessionOut

log = logging.getLogger(__name__)

SESSION_LIST_REFRESH_SECONDS = 15.0
# How often other sessions are checked for tool calls waiting on the user.
PERMISSION_POLL_SECONDS = 3.0
# Events that end a turn or the session: a watched session is marked or updated on them.
_TURN_END_STATUS = {
    "session.idle": "idle",
    "session.error": "error",
    "session.terminated": "terminated",
}
RECONNECT_MESSAGE = "⚠ Lost the connection to the backend: reconnecting… Nothing is lost; events resume when it is back."


class MainScreen(Screen[None]):
    """Sessions, chat and status; owns the session actions (new, rename, delete, pause)."""

    CSS_PATH = "main.tcss"
    AUTO_FOCUS = "#prompt"

    BINDINGS = [
        Binding("ctrl+n", "new_session", "New"),
        Binding("f2", "rename_session", "Rename"),
        Binding("f8", "delete_session", "Delete"),
        Binding("f4", "toggle_pause", "Pause/Resume"),
        Binding("escape", "interrupt", "Interrupt"),
        Binding("f3", "keys", "API keys"),
        Binding("f9", "choose_model", "Model", show=False),
        Binding("ctrl+b", "toggle_sessions", "Sidebar", show=False),
        Binding("ctrl+o", "focus_sessions", "Sessions", show=False),
        Binding("ctrl+l", "focus_prompt", "Prompt", show=False),
        Binding("f5", "refresh_sessions", "Refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._auto_titles: set[str] = set()
        self._watching: set[str] = set()  # sessions followed in the background until idle
        # Set when the backend becomes ready: the next sessions load sends the outbox.
        self._flush_after_load = False

    @property
    def agent_app(self) -> AgentApp:
        return self.app  # type: ignore[return-value]

    @property
    def client(self) -> AgentClient | None:
        return self.agent_app.client

    def compose(self) -> ComposeResult:
        yield Header()
        yield ConnectionBanner(id="banner")
        with Horizontal(id="main-body"):
            yield SessionsPane(id="sessions")
            yield ChatPane(id="chat")
        yield StatusLine(id="status")
        yield Footer()

    @property
    def sessions(self) -> SessionsPane:
        return self.query_one(SessionsPane)

    @property
    def chat(self) -> ChatPane:
        return self.query_one(ChatPane)

    @property
    def status(self) -> StatusLine:
        return self.query_one(StatusLine)

    @property
    def banner(self) -> ConnectionBanner:
        return self.query_one(ConnectionBanner)

    def on_mount(self) -> None:
        self.set_interval(PERMISSION_POLL_SECONDS, self._poll_permissions)
        self.set_interval(1.0, self._show_rate_limit)
        self.set_interval(SESSION_LIST_REFRESH_SECONDS, self._refresh_in_background)
        self._fit_to_width(self.app.size.width)
        typed_ahead, self.agent_app.typed_ahead = self.agent_app.typed_ahead, []
        for text in typed_ahead:
            self.chat.submit(text)  # the backend is not ready yet: they wait in the outbox

    def on_resize(self) -> None:
        self._fit_to_width(self.size.width)

    def _fit_to_width(self, width: int) -> None:
        # Below 100 columns the sidebar gets narrower and the footer compact,
        # so the chat and the key hints keep room.
        self.set_class(width < 100, "-narrow")
        self.query_one(Footer).compact = width < 100

    # ---- the app tells the screen how the backend is doing

    def backend_starting(self, label: str) -> None:
        """The backend is being started or dialled: messages typed now wait in the outbox."""
        self.status.connection = "starting"
        self.status.progress = label
        self.sessions.option_list.loading = True
        self.chat.outbox.hold(WAITING_FOR_START)

    def backend_failed(self, reason: str) -> None:
        """The backend could not be started or reached: waiting messages stay, with the reason."""
        self.status.connection = "failed"
        self.status.progress = ""
        self.chat.outbox.fail(reason)

    def backend_ready(self, mode_label: str, limitations: list[str]) -> None:
        """Connected: load the sessions, open the most recent one (unless the user
        asked to start on a new session), then send what waits in the outbox."""
        self.status.connection = "connected"
        self.status.progress = ""
        self.status.mode = mode_label
        for text in limitations:
            self.notify(text, title="Limited", severity="warning", timeout=12)
        self.chat.outbox.release()
        self._flush_after_load = True
        self._load_sessions(open_latest=self.agent_app.open_last_session)

    # ---- sessions

    def _refresh_in_background(self) -> None:
        # Not the user's doing: the server counts it apart from their rate limit.
        if self.client is not None:
            self._load_sessions(background=True)

    @work(exclusive=True, group="sessions", exit_on_error=False)
    async def _load_sessions(
        self, open_latest: bool = False, select_id: str | None = None, background: bool = False
    ) -> None:
        client = self.client
        if client is None:
            return
        try:
            sessions, _cursor = await client.list_sessions(limit=100, background=background)
        except Exception as exc:
            self.notify(describe(exc), title="Sessions", severity="error")
            self._flush_after_start()  # the list failed; the waiting messages need not
            return
        finally:
            self.sessions.option_list.loading = False
        self.sessions.show_sessions(sessions)
        self._watch_running(sessions)
        target = select_id
        if target is None and open_latest and self.chat.handle is None and sessions:
            target = sessions[0].id
        if target is not None:
            self.open_session(target)
        self._flush_after_start()

    def _flush_after_start(self) -> None:
        # Here, not in backend_ready: first the list and the session to open, if any.
        if self._flush_after_load:
            self._flush_after_load = False
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        """Send the oldest waiting message if the backend and the open session can take it.

        Called when the backend is ready, when the followed session turns idle and
        when a lost connection is back; one message per turn, in order.
        """
        outbox = self.chat.outbox
        if outbox.holding or not outbox.texts or self.client is None or self._creating():
            return
        chat = self.chat
        if chat.handle is not None and chat.chat.loading:
            return  # a session is opening: its status, once loaded, calls this again
        if chat.handle is None or chat.status in ("terminated", "error"):
            # No session to send to (or one that cannot take messages): make one for it.
            text = outbox.pop()
            if text is not None:
                self._create_session(text, from_outbox=True)
            return
        if chat.busy or chat.status not in ("idle", "paused"):
            return  # a turn runs (or the sandbox starts): its end calls this again
        text = outbox.pop()
        if text is not None:
            chat.send(text)

    def _creating(self) -> bool:
        return any(w.group == "create" and w.is_running for w in self.workers)

    # ---- sessions running out of sight

    def _watch_running(self, sessions: Iterable[SessionOut]) -> None:
        for session in sessions:
            if session.status == "running" and session.id != self.chat.session_id:
                self._watch(session.id, session.last_event_id)

    def _watch(self, session_id: str, after: int) -> None:
        """Follow a session that is not on screen until its turn ends, then mark it."""
        if session_id in self._watching or self.client is None:
            return
        self._watching.add(session_id)
        self.run_worker(
            self._watch_until_idle(session_id, after), group="watch", exit_on_error=False
        )

    async def _watch_until_idle(self, session_id: str, after: int) -> None:
        assert self.client is not None
        events = self.client.session(session_id).follow_events(after=after)
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    status = _TURN_END_STATUS.get(event.type)
                    if status is None:
                        continue
                    self.sessions.set_status(session_id, status)
                    if session_id != self.chat.session_id:
                        self.sessions.mark_finished(session_id)
                    return
        except Exception as exc:  # the list's next refresh shows the status anyway
            log.info("stopped watching session %s: %s", session_id, exc)
        finally:
            self._watching.discard(session_id)

    def open_session(self, session_id: str) -> None:
        """Show ``session_id`` in the chat pane (history, then live events)."""
        client = self.client
        if client is None:
            return
        chat = self.chat
        if chat.session_id == session_id:
            return
        if chat.handle is not None and (chat.busy or chat.status in ("running", "starting")):
            # Leaving a session mid-turn: keep an eye on it to mark it when it finishes.
            self._watch(chat.handle.id, chat.last_seq)
        handle: SessionHandle = client.session(session_id)
        self.sessions.mark_current(session_id)
        session = self.sessions.sessions.get(session_id)
        self.sub_title = session_title(session) if session else ""
        self.status.engine = session.engine if session else ""
        self.chat.open_session(handle)

    @on(SessionsPane.Selected)
    def _session_selected(self, event: SessionsPane.Selected) -> None:
        self.open_session(event.session_id)
        self.chat.prompt.focus()

    def action_refresh_sessions(self) -> None:
        """Reload the sessions list (titles, statuses, last activity)."""
        if self.client is not None:
            self._load_sessions()

    def action_new_session(self) -> None:
        """Create a session and open it."""
        self._create_session(None)

    def action_new_opencode_session(self) -> None:
        """Create a session whose turns run in OpenCode inside its sandbox, and open it."""
        self._create_session(None, engine="opencode")

    @on(ChatPane.NeedsSession)
    def _needs_session(self, event: ChatPane.NeedsSession) -> None:
        self._create_session(event.text)

    @work(exclusive=True, group="create", exit_on_error=False)
    async def _create_session(
        self, first_message: str | None, from_outbox: bool = False, engine: str | None = None
    ) -> None:
        client = self.client
        if client is None:
            self.notify(
                "Still connecting to the backend; try again in a moment.", severity="warning"
            )
            if first_message:
                self._give_back(first_message, "not connected", from_outbox)
            return
        self.status.progress = "creating session…"

        def on_event(event: object) -> None:
            data = getattr(event, "data", {}) or {}
            if getattr(event, "type", "") == "session.progress" and data.get("message"):
                self.status.progress = str(data["message"])

        title = first_message.strip().splitlines()[0][:60] if first_message else None
        try:
            handle = await client.create_session(title=title, engine=engine, on_event=on_event)
        except Exception as exc:
            self.status.progress = ""
            self.notify(
                describe(exc), title="Could not create a session", severity="error", timeout=10
            )
            if first_message:
                self._give_back(first_message, describe(exc), from_outbox)
            return
        self.status.progress = ""
        if handle.info is not None:
            self.sessions.update_session(handle.info)
        self.open_session(handle.id)
        self._load_sessions(select_id=None)
        if first_message:
            self.chat.send(first_message)
        else:
            self.notify("New session ready.", timeout=3)
        self.chat.prompt.focus()

    def _give_back(self, text: str, reason: str, from_outbox: bool) -> None:
        """A message that could not be sent returns to the prompt; one from the outbox
        returns there instead if the user is already typing something else."""
        prompt = self.chat.prompt
        if from_outbox and prompt.text.strip():
            self.chat.outbox.add(text, first=True)
            self.chat.outbox.fail(f"could not create a session: {reason}")
        else:
            prompt.load_text(text)

    def _current_session_id(self) -> str | None:
        """The session an action applies to: the one open in the chat, else the highlighted one."""
        if self.focused is self.sessions.option_list and self.sessions.highlighted_id:
            return self.sessions.highlighted_id
        return self.chat.session_id or self.sessions.highlighted_id

    def action_rename_session(self) -> None:
        """Give the current session a new title."""
        self._rename_session()

    @work(group="dialog", exit_on_error=False)
    async def _rename_session(self) -> None:
        session_id = self._current_session_id()
        client = self.client
        if session_id is None or client is None:
            self.notify("No session to rename.", severity="warning")
            return
        session = self.sessions.sessions.get(session_id)
        current = session.title or "" if session else ""
        title = await self.app.push_screen_wait(
            TextInputScreen("Rename session", value=current, placeholder="A short title")
        )
        if not title:
            return
        try:
            updated = await client.session(session_id).rename(title)
        except Exception as exc:
            self.notify(describe(exc), title="Rename failed", severity="error")
            return
        self.sessions.update_session(updated)
        if session_id == self.chat.session_id:
            self.sub_title = session_title(updated)

    def action_delete_session(self) -> None:
        """Delete (terminate) the current session after confirmation."""
        self._delete_session()

    @work(group="dialog", exit_on_error=False)
    async def _delete_session(self) -> None:
        session_id = self._current_session_id()
        client = self.client
        if session_id is None or client is None:
            self.notify("No session to delete.", severity="warning")
            return
        session = self.sessions.sessions.get(session_id)
        name = session_title(session) if session else session_id
        confirmed = await self.app.push_screen_wait(
            ConfirmScreen(
                "Delete session?",
                f"“{name}” will be stopped and its sandbox deleted. "
                "The conversation stays readable. This cannot be undone.",
                confirm_label="Delete",
            )
        )
        if not confirmed:
            return
        try:
            await client.session(session_id).delete()
        except Exception as exc:
            self.notify(describe(exc), title="Delete failed", severity="error")
            return
        self.sessions.set_status(session_id, "terminated")
        self.notify(f"Deleted “{name}”.", timeout=4)
        self._load_sessions()

    def action_toggle_pause(self) -> None:
        """Pause the current session's sandbox, or resume it when paused."""
        self._toggle_pause()

    @work(group="pause", exclusive=True, exit_on_error=False)
    async def _toggle_pause(self) -> None:
        session_id = self._current_session_id()
        client = self.client
        if session_id is None or client is None:
            self.notify("No session to pause or resume.", severity="warning")
            return
        session = self.sessions.sessions.get(session_id)
        resuming = session is not None and session.status == "paused"
        is_current = session_id == self.chat.session_id
        if is_current:
            self.status.sandbox_state = "resuming" if resuming else "pausing"
        handle = client.session(session_id)
        try:
            updated = await (handle.resume() if resuming else handle.pause())
        except Exception as exc:
            self.notify(
                describe(exc),
                title="Resume failed" if resuming else "Pause failed",
                severity="error",
            )
            if is_current and session is not None:
                self.status.sandbox_state = session.sandbox.state
            return
        self.sessions.update_session(updated)
        if is_current:
            self.status.session_status = updated.status
            self.status.sandbox_state = updated.sandbox.state
        self.notify(
            "Session resumed." if resuming else "Session paused: its sandbox is snapshotted.",
            timeout=4,
        )

    # ---- the chat pane reports upward

    @on(ChatPane.SessionLoaded)
    def _session_loaded(self, event: ChatPane.SessionLoaded) -> None:
        self.sessions.update_session(event.session)
        if event.session.id == self.chat.session_id:
            self.sub_title = session_title(event.session)
            self.status.model = event.session.model
            self.status.permission_mode = event.session.permission_mode
            self.status.engine = event.session.engine

    @on(ChatPane.SettingsChanged)
    def _settings_changed(self, event: ChatPane.SettingsChanged) -> None:
        if event.session_id == self.chat.session_id:
            self.status.model = str(event.data.get("model") or self.status.model)
            self.status.permission_mode = str(event.data.get("permissionMode") or "auto")

    @on(ChatPane.StatusChanged)
    def _status_changed(self, event: ChatPane.StatusChanged) -> None:
        self.sessions.set_status(event.session_id, event.status)
        if event.session_id != self.chat.session_id:
            return
        self.status.session_status = event.status
        if event.sandbox_state:
            self.status.sandbox_state = event.sandbox_state
        if event.status == "running":
            self._auto_title(event.session_id)
        elif event.status in ("idle", "paused", "terminated", "error"):
            self._flush_outbox()

    def _auto_title(self, session_id: str) -> None:
        # A session made with Ctrl+N has no title; name it after its first message.
        session = self.sessions.sessions.get(session_id)
        if session is None or session.title or session_id in self._auto_titles:
            return
        first = next((h for h in reversed(self.chat.prompt.sent_history)), None)
        if first:
            self._auto_titles.add(session_id)
            self._rename_quietly(session_id, first.strip().splitlines()[0][:60])

    @work(group="auto-title", exit_on_error=False)
    async def _rename_quietly(self, session_id: str, title: str) -> None:
        if self.client is None:
            return
        try:
            updated = await self.client.session(session_id).rename(title)
        except Exception:
            return  # a missing title is cosmetic; the user can rename with F2
        self.sessions.update_session(updated)
        if session_id == self.chat.session_id:
            self.sub_title = session_title(updated)

    @on(ChatPane.UsageChanged)
    def _usage_changed(self, event: ChatPane.UsageChanged) -> None:
        if event.session_id == self.chat.session_id:
            self.status.tokens = event.tokens

    @on(ChatPane.Progress)
    def _progress(self, event: ChatPane.Progress) -> None:
        self.status.progress = event.text

    @on(ChatPane.ConnectionChanged)
    def _connection_changed(self, event: ChatPane.ConnectionChanged) -> None:
        if event.state == "reconnecting":
            self.chat.outbox.hold(WAITING_FOR_RECONNECT)
            if not self.banner.shown:
                self.banner.show_message(RECONNECT_MESSAGE)
                self.notify("Lost the connection to the backend; reconnecting.", severity="warning")
            self.status.connection = "reconnecting"
        elif event.state == "connected":
            self.status.connection = "connected"
            if self.chat.outbox.holding and self.client is not None:
                self.chat.outbox.release()
                self._flush_outbox()
            if self.banner.shown:
                self.banner.hide()
                self.notify("Reconnected to the backend.", timeout=4)
                self._load_sessions()

    def _show_rate_limit(self) -> None:
        info = getattr(self.client, "last_rate_limit", None) if self.client is not None else None
        if info is not None:
            self.status.rate_remaining = info.remaining
            self.status.rate_limit = info.limit

    # ---- other actions

    def action_interrupt(self) -> None:
        """Stop the running turn."""
        if self.chat.interrupt():
            self.notify("Interrupting the turn…", timeout=3)

    def action_keys(self) -> None:
        """Open the API keys screen."""
        self.agent_app.action_keys()

    # ---- permission requests (every session's, in the tray above the prompt)

    @property
    def tray(self) -> PermissionTray:
        return self.query_one(PermissionTray)

    def _label(self, session_id: str) -> str:
        session = self.sessions.sessions.get(session_id)
        label = session_title(session) if session else session_id[:8]
        return "this session" if session_id == self.chat.session_id else label

    @on(ChatPane.PermissionEvent)
    async def _permission_event(self, event: ChatPane.PermissionEvent) -> None:
        if event.kind == "permission.requested":
            if await self.tray.show(event.session_id, self._label(event.session_id), event.data):
                self._focus_tray()
        else:
            await self.tray.drop(str(event.data.get("requestId")))
            self._refocus_prompt()

    def _focus_tray(self) -> None:
        first = self.tray.first()
        if first is not None and not self.chat.prompt.text.strip():
            first.focus()

    def _refocus_prompt(self) -> None:
        if self.focused is None or not self.focused.is_attached:
            self.chat.prompt.focus()

    @on(PermissionPrompt.Answered)
    def _permission_answered(self, event: PermissionPrompt.Answered) -> None:
        self._answer_permission(event.session_id, event.request_id, event.decision)

    @work(group="permissions", exit_on_error=False)
    async def _answer_permission(self, session_id: str, request_id: str, decision: str) -> None:
        client = self.client
        if client is None:
            return
        try:
            await client.session(session_id).answer_permission(request_id, decision)
        except Exception as exc:
            if error_code(exc) not in (
                "PERMISSION_ALREADY_ANSWERED",
                "PERMISSION_REQUEST_NOT_FOUND",
            ):
                self.notify(describe(exc), title="Not answered", severity="error")
                return
        await self.tray.drop(request_id)
        nxt = self.tray.first()
        if nxt is not None:
            nxt.focus()
        else:
            self.chat.prompt.focus()

    @work(group="permission-poll", exclusive=True, exit_on_error=False)
    async def _poll_permissions(self) -> None:
        """Find other sessions' requests (the open one's arrive as events)."""
        client = self.client
        if client is None:
            return
        try:
            # Automatic: it must not spend the user's rate limit.
            sessions, _ = await client.list_sessions(limit=100, background=True)
        except Exception:
            return
        for session in sessions:
            known = self.sessions.sessions.get(session.id)
            if known is not None and (
                known.pending_permission_count != session.pending_permission_count
            ):
                self.sessions.update_session(
                    known.model_copy(
                        update={"pending_permission_count": session.pending_permission_count}
                    )
                )
            shown = {
                p.request_id
                for p in self.tray.query(PermissionPrompt)
                if p.session_id == session.id
            }
            if not session.pending_permission_count and not shown:
                continue
            try:
                full = await client.get_session(session.id, background=True)
            except Exception:
                continue
            pending = full.pending_permissions or []
            await self.tray.keep_only(session.id, {p.request_id for p in pending})
            added = False
            for request in pending:
                added |= await self.tray.show(
                    session.id, self._label(session.id), request.model_dump(by_alias=True)
                )
            if added:
                self._focus_tray()
                if session.id != self.chat.session_id:
                    self.notify(
                        f"“{self._label(session.id)}” waits for your approval (y/n/a above the prompt).",
                        title="Permission",
                        severity="warning",
                    )

    # ---- slash commands

    @on(ChatPane.SlashCommandTyped)
    def _slash(self, event: ChatPane.SlashCommandTyped) -> None:
        name, argument = event.command.name, event.command.argument
        if name == "new":
            if argument in ("opencode", "builtin"):
                self._create_session(None, engine=argument)
            elif argument:
                self.notify("/new takes no argument, or opencode", severity="warning")
            else:
                self.action_new_session()
        elif name == "model":
            self._choose_model(argument or None)
        elif name == "rename":
            if argument:
                self._rename_to(argument)
            else:
                self.action_rename_session()
        elif name == "help":
            if self.chat.session_id is None:
                self.notify(slash.help_text(), title="Commands", timeout=20)
            else:
                self.run_worker(self.chat.chat.add_notice(slash.help_text(), "info"), group="help")
        elif name == "compact":
            self._compact()
        elif name == "permissions":
            if argument not in slash.PERMISSION_MODES:
                self.notify(
                    f"Permission mode: {self.status.permission_mode}. "
                    "Use /permissions auto|ask|read-only.",
                    timeout=6,
                )
                return
            self._update_session("permission mode", permission_mode=argument)
        elif name == "thinking":
            if argument not in ("on", "off"):
                self.notify("Use /thinking on or /thinking off.", severity="warning")
                return
            self._update_session("thinking", thinking=argument == "on")

    @work(group="dialog", exit_on_error=False)
    async def _rename_to(self, title: str) -> None:
        session_id, client = self.chat.session_id, self.client
        if session_id is None or client is None:
            self.notify("No session to rename.", severity="warning")
            return
        try:
            updated = await client.session(session_id).rename(title[:200])
        except Exception as exc:
            self.notify(describe(exc), title="Rename failed", severity="error")
            return
        self.sessions.update_session(updated)
        self.sub_title = session_title(updated)

    @work(group="update", exit_on_error=False)
    async def _update_session(self, what: str, **changes: object) -> None:
        session_id, client = self.chat.session_id, self.client
        if session_id is None or client is None:
            self.notify("Open or create a session first.", severity="warning")
            return
        try:
            updated = await client.session(session_id).update(**changes)  # type: ignore[arg-type]
        except Exception as exc:
            self.notify(describe(exc), title=f"{what.capitalize()} not changed", severity="error")
            return
        self.status.permission_mode = updated.permission_mode
        self.notify(
            f"Permission mode: {updated.permission_mode}."
            if "permission_mode" in changes
            else f"Thinking {'on' if updated.thinking else 'off'} (from the next message).",
            timeout=4,
        )

    @work(group="compact", exclusive=True, exit_on_error=False)
    async def _compact(self) -> None:
        session_id, client = self.chat.session_id, self.client
        if session_id is None or client is None:
            self.notify("Open or create a session first.", severity="warning")
            return
        self.status.progress = "compacting…"
        try:
            result = await client.session(session_id).compact()
        except Exception as exc:
            self.notify(describe(exc), title="Not compacted", severity="error")
            return
        finally:
            self.status.progress = ""
        if not result.compacted:
            self.notify("Too little conversation to compact yet.", timeout=4)

    def action_choose_model(self) -> None:
        """Pick the current session's model from the models the backend offers."""
        self._choose_model(None)

    @work(group="dialog", exit_on_error=False)
    async def _choose_model(self, wanted: str | None) -> None:
        session_id = self.chat.session_id
        client = self.client
        if session_id is None or client is None:
            self.notify("Open or create a session first.", severity="warning")
            return
        try:
            listing = await client.list_models()
        except Exception as exc:
            self.notify(describe(exc), title="Models", severity="error")
            return
        if wanted is None:
            note = (
                ""
                if listing.source == "endpoint"
                else "The endpoint lists no models: these are configured (ANTHROPIC_MODELS)."
            )
            wanted = await self.app.push_screen_wait(
                ModelPickerScreen(listing.models, current=self.status.model or None, note=note)
            )
            if not wanted:
                return
        try:
            updated = await client.session(session_id).update(model=wanted)
        except Exception as exc:
            self.notify(describe(exc), title="Model not changed", severity="error")
            return
        self.status.model = updated.model
        self.sessions.update_session(updated)
        self.notify(f"Model: {updated.model} (from the next message).", timeout=4)

    def action_toggle_sessions(self) -> None:
        """Hide or show the sessions sidebar."""
        self.sessions.display = not self.sessions.display

    def action_focus_sessions(self) -> None:
        """Move the focus to the sessions list."""
        self.sessions.display = True
        self.sessions.option_list.focus()

    def action_focus_prompt(self) -> None:
        """Move the focus to the prompt."""
        self.chat.prompt.focus()

    def palette_commands(self) -> Iterator[SystemCommand]:
        """This screen's entries for the command palette."""
        yield SystemCommand(
            "New session", "Create a session and open it (Ctrl+N)", self.action_new_session
        )
        yield SystemCommand(
            "New OpenCode session",
            "Create a session whose turns run in OpenCode inside its sandbox (/new opencode)",
            self.action_new_opencode_session,
        )
        yield SystemCommand(
            "Rename session", "Give the current session a title (F2)", self.action_rename_session
        )
        yield SystemCommand(
            "Delete session", "Stop and delete the current session (F8)", self.action_delete_session
        )
        yield SystemCommand(
            "Pause or resume session",
            "Snapshot and stop the sandbox, or start it again (F4)",
            self.action_toggle_pause,
        )
        yield SystemCommand("Interrupt turn", "Stop the running turn (Esc)", self.action_interrupt)
        yield SystemCommand("API keys", "List, create and revoke API keys (F3)", self.action_keys)
        yield SystemCommand(
            "Compact context",
            "Summarise the conversation for the model now (/compact)",
            self._compact,
        )
        yield SystemCommand(
            "Permission mode: ask",
            "Approve shell, write and edit calls (/permissions ask)",
            lambda: self._update_session("permission mode", permission_mode="ask"),
        )
        yield SystemCommand(
            "Permission mode: auto",
            "Run every tool call (/permissions auto)",
            lambda: self._update_session("permission mode", permission_mode="auto"),
        )
        yield SystemCommand(
            "Permission mode: read-only",
            "Refuse shell, write and edit (/permissions read-only)",
            lambda: self._update_session("permission mode", permission_mode="read-only"),
        )
        yield SystemCommand(
            "Choose model",
            "The model of the current session (F9, or /model)",
            self.action_choose_model,
        )
        yield SystemCommand(
            "Refresh sessions", "Reload the sessions list (F5)", self.action_refresh_sessions
        )
        yield SystemCommand(
            "Toggle sidebar", "Hide or show the sessions list (Ctrl+B)", self.action_toggle_sessions
        )
        yield SystemCommand(
            "Focus sessions", "Move to the sessions list (Ctrl+O)", self.action_focus_sessions
        )
        yield SystemCommand("Focus prompt", "Move to the prompt (Ctrl+L)", self.action_focus_prompt)
