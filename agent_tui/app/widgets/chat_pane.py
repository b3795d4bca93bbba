"""The chat pane: one session's transcript, its live events and the prompt."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import var
from textual.widgets import Static

from agent_tui.app import slash
from agent_tui.app.api_errors import describe, error_code
from agent_tui.app.session_status import STATUS_EVENTS, apply_status_event
from agent_tui.app.widgets.agent_blocks import AgentBlocks
from agent_tui.app.widgets.chat_view import ChatView
from agent_tui.app.widgets.completion_hint import CompletionHint
from agent_tui.app.widgets.outbox import Outbox
from agent_tui.app.widgets.permission_prompt import PermissionTray
from agent_tui.app.widgets.prompt import PromptArea

if TYPE_CHECKING:
    from agent_tui.client import SessionHandle
    from backend.events import Event
    from backend.schemas import SessionOut

# The follower yields to the event loop at least this often while events pour in.
YIELD_EVERY_S = 0.01

# History shown when a session is opened; older messages stay on the server.
HISTORY_LIMIT = 100

# Paragraphs without hard line breaks: they wrap to whatever width the pane has.
WELCOME = """\
[b]Welcome to agent-tui.[/b]

Type a message below and press [b]Enter[/b] to start a session, or press [b]Ctrl+N[/b] \
for a new one. [b]Ctrl+P[/b] lists every action.

In the prompt, [b]Ctrl+J[/b] adds a line and [b]↑[/b] recalls earlier messages.

Sessions run the built-in agent; [b]/new opencode[/b] starts one whose turns run in \
OpenCode instead. [b]/help[/b] lists the slash commands.
"""


class ChatPane(Vertical):
    """Shows one session and talks to it.

    ``open_session`` renders the stored history, then follows the session's
    event stream from ``lastEventId`` in an exclusive worker: that stream is
    the only thing that renders events (a sent message shows up when the
    server echoes it), and events are deduplicated by ``seq``. Status changes
    are posted upward as messages for the status line and the sessions pane.
    """

    busy: var[bool] = var(False)

    class StatusChanged(Message):
        """The followed session's status (and maybe sandbox state) changed."""

        def __init__(self, session_id: str, status: str, sandbox_state: str | None) -> None:
            self.session_id = session_id
            self.status = status
            self.sandbox_state = sandbox_state
            super().__init__()

    class SessionLoaded(Message):
        """A session was opened: its fresh ``SessionOut``."""

        def __init__(self, session: SessionOut) -> None:
            self.session = session
            super().__init__()

    class ConnectionChanged(Message):
        """The event stream is connected or reconnecting."""

        def __init__(self, state: str) -> None:
            self.state = state
            super().__init__()

    class UsageChanged(Message):
        """Tokens used by the session so far."""

        def __init__(self, session_id: str, tokens: int) -> None:
            self.session_id = session_id
            self.tokens = tokens
            super().__init__()

    class Progress(Message):
        """A progress line from the backend ("creating sandbox")."""

        def __init__(self, text: str) -> None:
            self.text = text
            super().__init__()

    class SettingsChanged(Message):
        """The followed session's model or agent options changed (``session.updated``)."""

        def __init__(self, session_id: str, data: dict[str, Any]) -> None:
            self.session_id = session_id
            self.data = data
            super().__init__()

    class SlashCommandTyped(Message):
        """The user typed a slash command (``/model``, ``/compact``...)."""

        def __init__(self, command: slash.SlashCommand) -> None:
            self.command = command
            super().__init__()

    class PermissionEvent(Message):
        """``permission.requested`` / ``permission.answered`` of the followed session."""

        def __init__(self, session_id: str, kind: str, data: dict[str, Any]) -> None:
            self.session_id = session_id
            self.kind = kind
            self.data = data
            super().__init__()

    class NeedsSession(Message):
        """The user sent a message with no session open: create one for it."""

        def __init__(self, text: str) -> None:
            self.text = text
            super().__init__()

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.handle: SessionHandle | None = None
        self.status = "—"
        self.tokens = 0
        self.last_seq = 0
        self._sending = False
        self._skip_ids: set[str] = set()
        self._render_lock = asyncio.Lock()

    def compose(self) -> ComposeResult:
        yield ChatView(id="chat-view")
        yield Static(WELCOME, id="chat-welcome")
        yield Static("● the agent is working: Esc interrupts", id="turn-indicator", markup=False)
        yield PermissionTray(id="permission-tray")
        yield Outbox(id="outbox")
        yield PromptArea(
            id="prompt", placeholder="Message the agent (Enter: send, Ctrl+J: new line)"
        )
        yield CompletionHint(id="completion-hint")

    def on_mount(self) -> None:
        self._show_welcome(True)
        self.blocks = AgentBlocks(self.chat)
        self.set_interval(1.0, self.blocks.tick)
        self.prompt.complete = self._accept_completion
        self._file_cache: dict[tuple[str, str], list[str]] = {}

    # ---- completion of /commands and @paths

    @property
    def hint(self) -> CompletionHint:
        return self.query_one(CompletionHint)

    @on(PromptArea.Changed, "#prompt")
    def _prompt_changed(self) -> None:
        text = self.prompt.text
        commands = slash.command_completions(text)
        if commands:
            self.hint.show(commands)
            return
        mention = slash.mention_at_end(text)
        if mention is not None and self.handle is not None:
            self._complete_path(self.handle, mention)
            return
        self.hint.show([])

    @work(exclusive=True, group="complete", exit_on_error=False)
    async def _complete_path(self, handle: SessionHandle, typed: str) -> None:
        directory, prefix = slash.split_mention(typed)
        key = (handle.id, directory)
        names = self._file_cache.get(key)
        if names is None:
            try:
                entries = await handle.list_files(directory + "/" if directory else "/")
            except Exception:
                self.hint.show([], "  (no such folder)")
                return
            names = [e.name + ("/" if e.is_directory else "") for e in entries]
            self._file_cache[key] = names
        base = f"{directory}/" if directory else ""
        self.hint.show([f"@{base}{n}" for n in names if n.startswith(prefix)])

    def _accept_completion(self) -> bool:
        """Tab: replace what is being typed with the first candidate."""
        candidates = self.hint.candidates
        if not candidates:
            return False
        text = self.prompt.text
        choice = candidates[0]
        if choice.startswith("/"):
            new = choice + " "
        else:
            typed = slash.mention_at_end(text) or ""
            new = text[: len(text) - len(typed) - 1] + choice
            if not choice.endswith("/"):
                new += " "
        self.prompt.load_text(new)
        self.prompt.move_cursor(self.prompt.document.end)
        return True

    def watch_busy(self, busy: bool) -> None:
        # The class goes on the prompt and the indicator, not on this pane: a class
        # change on an ancestor restyles every widget of the transcript below it.
        self.prompt.set_class(busy, "-busy")
        self.query_one("#turn-indicator").display = busy

    def _show_welcome(self, show: bool) -> None:
        self.query_one("#chat-welcome").display = show
        self.chat.display = not show

    @property
    def chat(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def prompt(self) -> PromptArea:
        return self.query_one(PromptArea)

    @property
    def outbox(self) -> Outbox:
        return self.query_one(Outbox)

    @property
    def session_id(self) -> str | None:
        return self.handle.id if self.handle is not None else None

    def _set_status(self, status: str, sandbox_state: str | None = None) -> None:
        self.status = status
        self.busy = self._sending or status in ("running", "starting")
        if self.handle is not None:
            self.post_message(self.StatusChanged(self.handle.id, status, sandbox_state))

    # ---- opening a session

    def open_session(self, handle: SessionHandle) -> None:
        """Show ``handle``'s session: history first, then its live events."""
        self.handle = handle
        self._sending = False
        self.busy = False
        self._show_welcome(False)
        self.chat.loading = True
        self._follow(handle)

    def close_session(self) -> None:
        """Stop following and show the welcome text (the session was deleted or none exist)."""
        self.workers.cancel_group(self, "follow")
        self.handle = None
        self._sending = False
        self.busy = False
        self.run_worker(self.chat.clear(), group="clear")
        self._show_welcome(True)

    @work(exclusive=True, group="follow", exit_on_error=False)
    async def _follow(self, handle: SessionHandle) -> None:
        try:
            # The session first, then its messages: an event after lastEventId that
            # is already in the history is skipped by its messageId below.
            session = await handle.refresh()
            history = await handle.messages(limit=HISTORY_LIMIT)
        except Exception as exc:
            self.chat.loading = False
            await self.chat.clear()
            await self.chat.add_notice(f"Could not load this session: {describe(exc)}", "error")
            self.notify(describe(exc), title="Session", severity="error")
            return
        async with self._render_lock:
            self.blocks.reset()
            await self.chat.clear()
            await self.chat.show_history(history, more=len(history) >= HISTORY_LIMIT)
            self.chat.loading = False
        # Finished messages are complete in the history; an assistant message still
        # running (no stopReason yet) keeps receiving its events.
        self._skip_ids = {m.id for m in history if m.role == "user" or m.stop_reason is not None}
        self.last_seq = session.last_event_id
        self.tokens = session.usage.input_tokens + session.usage.output_tokens
        self.post_message(self.SessionLoaded(session))
        self.post_message(self.UsageChanged(handle.id, self.tokens))
        self._set_status(session.status, session.sandbox.state)
        events = handle.follow_events(
            after=session.last_event_id, on_state=self._on_connection_state
        )
        try:
            async with contextlib.aclosing(events):
                loop = asyncio.get_running_loop()
                last_yield = loop.time()
                async for event in events:
                    if event.seq <= self.last_seq:
                        continue
                    self.last_seq = event.seq
                    async with self._render_lock:
                        await self.apply_event(event)
                    # One network read can hold hundreds of events and buffered text
                    # never awaits: yield now and then so key presses are not kept waiting.
                    if loop.time() - last_yield > YIELD_EVERY_S:
                        await asyncio.sleep(0)
                        last_yield = loop.time()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            code = error_code(exc)
            text = describe(exc)
            if code in ("SESSION_NOT_FOUND", "NOT_FOUND"):
                text = "This session no longer exists."
            await self.chat.add_notice(f"Stopped following this session: {text}", "error")
            self.notify(text, title="Event stream", severity="error")
            self._sending = False
            self._set_status("error")

    def _on_connection_state(self, state: Any) -> None:
        self.post_message(self.ConnectionChanged(str(getattr(state, "value", state))))

    # ---- events -> widgets

    async def apply_event(self, event: Event) -> None:
        """Render one event of the followed session."""
        data = event.data
        message_id = data.get("messageId")
        if message_id is not None and message_id in self._skip_ids:
            return
        chat = self.chat
        kind = event.type
        if kind == "message.user":
            await chat.add_user(data.get("content", ""), message_id=message_id)
        elif kind == "message.assistant":
            if data.get("isPartial"):
                await chat.stream_text(data.get("content", ""), message_id=message_id)
            else:
                await chat.end_text(data.get("content", ""), message_id=message_id)
        elif kind == "message.tool":
            tool_id = data.get("toolId") or data.get("id") or ""
            name = data.get("toolName", "tool")
            arguments = data.get("arguments") or {}
            if data.get("status") == "calling":
                await chat.start_tool(tool_id, name, arguments)
            else:
                await self.blocks.on_tool_done(tool_id, chat.tool_block(tool_id))
                await chat.finish_tool(
                    tool_id,
                    data.get("result"),
                    is_error=bool(data.get("isError")),
                    name=name,
                    arguments=arguments,
                )
        elif kind == "message.thinking":
            await self.blocks.on_thinking(data)
        elif kind == "tool.output":
            await self.blocks.on_tool_output(data, chat.tool_block(str(data.get("toolId") or "")))
        elif kind == "context.compacted":
            await self.blocks.on_compacted(data)
        elif kind == "message.complete":
            await chat.end_turn(data.get("stopReason"))
            usage = data.get("usage") or {}
            self.tokens += int(usage.get("inputTokens", 0)) + int(usage.get("outputTokens", 0))
            if self.handle is not None:
                self.post_message(self.UsageChanged(self.handle.id, self.tokens))
            if data.get("stopReason") == "interrupted":
                self.notify("The turn was interrupted.", title="Stopped", severity="warning")
            else:
                self.notify("The agent finished.", title="Done", timeout=3)
        elif kind == "error":
            text = data.get("message") or data.get("code") or "The turn failed"
            await chat.add_notice(f"{text} ({data.get('code', 'ERROR')})", "error")
            self.notify(text, title="Turn failed", severity="error")
        elif kind == "session.progress":
            self.post_message(self.Progress(data.get("message", "")))
        elif kind == "session.updated":
            if self.handle is not None:
                self.post_message(self.SettingsChanged(self.handle.id, data))
        elif kind in ("permission.requested", "permission.answered"):
            if self.handle is not None:
                self.post_message(self.PermissionEvent(self.handle.id, kind, data))
        elif kind in STATUS_EVENTS:
            update = apply_status_event(self.status, kind)
            assert update is not None
            if kind == "session.error":
                text = data.get("message") or "The session failed"
                await chat.add_notice(f"Session error: {text}", "error")
                self.notify(text, title="Session error", severity="error")
            elif kind == "session.terminated":
                await chat.add_notice(
                    "This session was deleted. Its history stays readable.", "info"
                )
            if kind in ("session.idle", "session.ready"):
                self._sending = False
                self.post_message(self.Progress(""))
            self._set_status(update.status, update.sandbox_state)

    # ---- sending and interrupting

    @on(PromptArea.Submitted)
    def _submitted(self, event: PromptArea.Submitted) -> None:
        event.stop()
        self.submit(event.text)

    def submit(self, text: str) -> None:
        """Send ``text`` unless a turn is running (then say so, and keep the draft).
        A slash command runs instead of being sent."""
        command = slash.parse(text)
        if command is not None:
            self.prompt.remember(text)
            self.hint.show([])
            self.post_message(self.SlashCommandTyped(command))
            return
        if slash.looks_like_command(text):
            self.notify(f"Unknown command {text.split()[0]}; /help lists them.", severity="warning")
            return
        self.hint.show([])
        if self.outbox.holding:  # the backend is starting or away: the screen sends it later
            self.prompt.remember(text)
            self.outbox.add(text)
            return
        if self.handle is None:
            self.prompt.remember(text)
            self.post_message(self.NeedsSession(text))
            return
        if self.busy:
            self.notify(
                "The agent is still working on the last message. Wait, or press Esc to interrupt it.",
                title="Busy",
                severity="warning",
            )
            return
        if self.status == "terminated":
            self.notify(
                "This session was deleted. Start a new one with Ctrl+N.", severity="warning"
            )
            return
        self.prompt.remember(text)
        self.send(text)

    def send(self, text: str) -> None:
        """Post ``text`` to the session; its events come back through the follower."""
        if self.handle is None:
            return
        self._sending = True
        self.busy = True
        self._send(self.handle, text)

    @work(group="send", exit_on_error=False)
    async def _send(self, handle: SessionHandle, text: str) -> None:
        try:
            # The follower renders every event exactly once; this request only
            # starts the turn. Its stream is left after the first event (leaving
            # does not stop the turn) so events are not parsed twice.
            payload = await self._with_attachments(handle, text)
            events = handle.stream_message(payload)
            async with contextlib.aclosing(events):
                async for _event in events:
                    break
        except Exception as exc:
            if error_code(exc) == "SESSION_BUSY":
                self.notify(
                    "The session is busy; try again when it is idle.",
                    title="Busy",
                    severity="warning",
                )
            else:
                self.notify(describe(exc), title="Message not sent", severity="error")
                # Nothing typed is lost: the message returns to an empty prompt.
                given_back = not self.prompt.text.strip()
                if given_back:
                    self.prompt.load_text(text)
                if handle is self.handle:
                    note = " It is back in the prompt: Enter sends it again." if given_back else ""
                    await self.chat.add_notice(f"Message not sent: {describe(exc)}{note}", "error")
        finally:
            if handle is self.handle:
                self._sending = False
                self.busy = self.status in ("running", "starting")

    async def _with_attachments(self, handle: SessionHandle, text: str) -> str:
        """``text`` with the content of each ``@path`` file it names appended."""
        for path in slash.mentions(text):
            try:
                content = await handle.read_text(path)
            except Exception:
                continue  # not a file (or unreadable): the @word stays plain text
            text += slash.attachment(path, content)
        return text

    def interrupt(self) -> bool:
        """Ask the server to stop the running turn; False when nothing runs."""
        if self.handle is None or not self.busy:
            return False
        self._interrupt(self.handle)
        return True

    @work(group="interrupt", exit_on_error=False)
    async def _interrupt(self, handle: SessionHandle) -> None:
        self.post_message(self.Progress("interrupting…"))
        try:
            await handle.interrupt()
        except Exception as exc:
            self.notify(describe(exc), title="Interrupt failed", severity="error")
