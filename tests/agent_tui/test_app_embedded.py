"""Pilot tests of the app against the real backend and the fake Anthropic model.

The embedded backend runs in the app's own loop, exactly as ``agent-tui`` runs
it. The reconnect test instead serves the same backend on a loopback port it
can stop and start again (the embedded socket lives and dies with its
backend), and reaches it the way ``agent-tui --remote`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, OptionList

from agent_tui.app.app import AgentApp
from agent_tui.app.connection import EmbeddedConnection, RemoteConnection
from agent_tui.app.screens.confirm import ConfirmScreen
from agent_tui.app.screens.key_create import KeyCreateScreen
from agent_tui.app.screens.key_created import KeyCreatedScreen
from agent_tui.app.screens.keys import KeysScreen
from agent_tui.app.widgets.assistant_message import AssistantMessage
from agent_tui.app.widgets.chat_notice import ChatNotice
from agent_tui.app.widgets.chat_pane import ChatPane
from agent_tui.app.widgets.connection_banner import ConnectionBanner
from agent_tui.app.widgets.prompt import PromptArea
from agent_tui.app.widgets.status_line import StatusLine
from agent_tui.app.widgets.tool_call import ToolCallBlock
from agent_tui.app.widgets.user_message import UserMessage
from backend.settings import Settings
from tests.agent_tui.fake_client import wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, reply

SIZE = (120, 40)
# Sandboxes start and tools run for real: allow more than the fake's timings.
SLOW = 20.0


def bwrap_works() -> bool:
    try:
        from sandbox.local import bwrap_available

        return bool(bwrap_available())
    except ImportError:
        return shutil.which("bwrap") is not None


@pytest.fixture(scope="module")
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, fake_model: FakeAnthropic) -> Settings:
    fake_model.reset()
    return Settings(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        anthropic_api_key="test",
        anthropic_base_url=fake_model.url,
        # Without bubblewrap the local sandbox runs commands unisolated; fine for a test.
        unsafe_local_sandbox=not bwrap_works(),
    )


def pane(app: AgentApp) -> ChatPane:
    return app.main_screen.query_one(ChatPane)


async def send(pilot, app: AgentApp, text: str) -> None:
    app.screen.query_one(PromptArea).insert(text)
    await pilot.press("enter")


async def started(pilot, app: AgentApp) -> None:
    await wait_until(pilot, lambda: app.client is not None, SLOW, "backend")
    await wait_until(
        pilot, lambda: not app.main_screen.query_one("#session-list").loading, SLOW, "sessions"
    )


async def new_session(pilot, app: AgentApp) -> str:
    before = pane(app).session_id
    await pilot.press("ctrl+n")
    await wait_until(pilot, lambda: pane(app).session_id not in (None, before), SLOW, "new session")
    await wait_until(pilot, lambda: pane(app).status == "idle", SLOW, "session ready")
    session_id = pane(app).session_id
    assert session_id is not None
    return session_id


async def idle(pilot, app: AgentApp) -> None:
    await wait_until(
        pilot, lambda: pane(app).status == "idle" and not pane(app).busy, SLOW, "turn end"
    )


async def test_session_turn_tool_block_interrupt_switch_and_keys(
    settings: Settings, fake_model: FakeAnthropic
) -> None:
    app = AgentApp(EmbeddedConnection(settings))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        first_id = await new_session(pilot, app)

        # A turn: streamed text, a real tool call in the sandbox, more text.
        fake_model.enqueue(
            reply()
            .text("Let me check the workspace.")
            .tool_use("shell", {"command": "echo hello-from-sandbox"}),
            reply().text("The command printed **hello**.").stop("end_turn"),
        )
        await send(pilot, app, "run the command")
        await wait_until(pilot, lambda: app.screen.query(ToolCallBlock), SLOW, "tool block")
        await idle(pilot, app)
        await wait_until(
            pilot, lambda: len(app.screen.query(AssistantMessage)) == 2, SLOW, "two text blocks"
        )
        first, second = app.screen.query(AssistantMessage)
        assert first.source.strip() == "Let me check the workspace."
        assert second.source.strip() == "The command printed **hello**."
        block = app.screen.query_one(ToolCallBlock)
        assert block.tool_name == "shell" and block.status == "done"
        assert "hello-from-sandbox" in (block.result or "")
        status = app.screen.query_one(StatusLine)
        # The status line takes the usage from its own message, a moment after the turn.
        await wait_until(pilot, lambda: status.tokens > 0, SLOW, "token usage")
        assert (status.sandbox_state, status.connection) == ("ready", "connected")

        # Interrupt a slow turn with Escape.
        words = [f"word{i} " for i in range(200)]
        fake_model.enqueue(reply().text("".join(words), chunks=words).delay(0.05))
        await send(pilot, app, "write a lot")
        await wait_until(
            pilot, lambda: len(app.screen.query(AssistantMessage)) == 3, SLOW, "streaming"
        )
        await pilot.press("escape")
        await idle(pilot, app)
        await wait_until(pilot, lambda: app.screen.query(ChatNotice), SLOW, "interrupted notice")
        assert app.screen.query(ChatNotice).last().kind == "interrupted"
        streamed = app.screen.query(AssistantMessage).last().source
        assert streamed.startswith("word0 ") and len(streamed) < len("".join(words))

        # A second session, then back to the first: its history comes from the server.
        second_id = await new_session(pilot, app)
        assert not app.screen.query(UserMessage)
        options = app.main_screen.query_one(OptionList)
        options.focus()
        options.highlighted = options.get_option_index(first_id)
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: pane(app).session_id == first_id and not pane(app).chat.loading,
            SLOW,
            "switch",
        )
        await wait_until(pilot, lambda: len(app.screen.query(UserMessage)) == 2, SLOW, "history")
        assert [str(m.content) for m in app.screen.query(UserMessage)] == [
            "run the command",
            "write a lot",
        ]
        # The reloaded turn reads in the order it streamed: text, tool, text.
        transcript = [
            type(w).__name__ for w in pane(app).chat.children if not isinstance(w, ChatNotice)
        ]
        assert transcript == [
            "UserMessage",
            "AssistantMessage",
            "ToolCallBlock",
            "AssistantMessage",
            "UserMessage",
            "AssistantMessage",
        ]
        [history_block] = app.screen.query(ToolCallBlock)
        assert history_block.status == "done" and "hello-from-sandbox" in (
            history_block.result or ""
        )
        assert app.screen.query(ChatNotice).last().kind == "interrupted"
        assert second_id != first_id

        # Keys: create one (shown once), then revoke it.
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen), SLOW, "keys screen")
        table = app.screen.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, SLOW, "key list")
        await pilot.press("n")
        await wait_until(
            pilot, lambda: isinstance(app.screen, KeyCreateScreen), SLOW, "create form"
        )
        app.screen.query_one("#key-name", Input).value = "laptop"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), SLOW, "key shown")
        new_key = str(app.screen.query_one("#new-key").content)
        assert new_key.startswith("aa_live_")
        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_count == 2, SLOW, "two keys")
        keys_screen = app.screen
        assert isinstance(keys_screen, KeysScreen)
        laptop = next(k for k in keys_screen.keys.values() if k.name == "laptop")
        table.move_cursor(row=table.get_row_index(laptop.id))
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), SLOW, "confirm")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: keys_screen.keys[laptop.id].revoked_at is not None,
            SLOW,
            "revoked in the list",
        )
        assert app.client is not None
        assert next(k for k in await app.client.list_keys() if k.id == laptop.id).revoked_at


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackBackend:
    """The backend served on 127.0.0.1:port, stoppable and restartable on the same port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import uvicorn

        from backend.app import create_app

        config = uvicorn.Config(
            create_app(self.settings),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=1,
        )
        self._server = server = uvicorn.Server(config)
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # Textual owns signals
        self._task = asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 15)
            self._server = self._task = None

    async def admin_key(self) -> str:
        from backend.auth import create_api_key
        from backend.store import open_store

        store = open_store(self.settings)
        await store.migrate()
        try:
            _, key = await create_api_key(
                store, user_id="local", name="test", scopes=["sessions", "admin"]
            )
        finally:
            await store.close()
        return key


async def test_reconnect_banner_when_the_backend_goes_away_and_comes_back(
    settings: Settings, fake_model: FakeAnthropic
) -> None:
    backend = LoopbackBackend(settings)
    key = await backend.admin_key()
    await backend.start()
    app = AgentApp(RemoteConnection(backend.url, key))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await started(pilot, app)
            await new_session(pilot, app)
            banner = app.screen.query_one(ConnectionBanner)
            status = app.screen.query_one(StatusLine)
            assert not banner.display and status.connection == "connected"

            await backend.stop()
            await wait_until(pilot, lambda: banner.display, SLOW, "reconnect banner")
            assert "reconnecting" in str(banner.content)
            assert status.connection == "reconnecting"

            await backend.start()
            await wait_until(pilot, lambda: not banner.display, SLOW, "banner gone")
            assert status.connection == "connected"

            # The session still works after the backend came back.
            fake_model.enqueue(reply().text("Back again.").stop("end_turn"))
            await send(pilot, app, "are you there?")
            await wait_until(
                pilot,
                lambda: (
                    app.screen.query(AssistantMessage)
                    and app.screen.query(AssistantMessage).last().source.strip() == "Back again."
                ),
                SLOW,
                "reply",
            )
            await idle(pilot, app)
    finally:
        await backend.stop()


async def test_escape_interrupts_a_turn_sent_to_a_paused_session(
    settings: Settings, fake_model: FakeAnthropic
) -> None:
    # The server answers a message to a paused session with session.running, then
    # session.resumed: the app must still see a running turn and let Esc stop it.
    app = AgentApp(EmbeddedConnection(settings))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await new_session(pilot, app)
        status = app.screen.query_one(StatusLine)
        await pilot.press("f4")
        await wait_until(pilot, lambda: pane(app).status == "paused", SLOW, "paused")

        words = [f"word{i} " for i in range(400)]
        fake_model.enqueue(reply().text("".join(words), chunks=words).delay(0.05))
        await send(pilot, app, "write a lot")
        await wait_until(pilot, lambda: app.screen.query(AssistantMessage), SLOW, "streaming")
        await wait_until(pilot, lambda: status.sandbox_state == "ready", SLOW, "resumed")
        assert pane(app).status == "running" and pane(app).busy
        assert status.session_status == "running"
        assert app.screen.query_one("#turn-indicator").display

        await pilot.press("escape")
        await idle(pilot, app)
        await wait_until(pilot, lambda: app.screen.query(ChatNotice), SLOW, "interrupted notice")
        assert app.screen.query(ChatNotice).last().kind == "interrupted"
        streamed = app.screen.query(AssistantMessage).last().source
        assert len(streamed) < len("".join(words))


async def test_background_refreshes_do_not_spend_the_users_rate_limit(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_tui.app.screens import main

    monkeypatch.setattr(main, "SESSION_LIST_REFRESH_SECONDS", 0.2)
    app = AgentApp(EmbeddedConnection(settings))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await new_session(pilot, app)
        status = app.screen.query_one(StatusLine)
        client = app.client
        assert client is not None
        await wait_until(pilot, lambda: status.rate_remaining is not None, SLOW, "rate limit shown")
        calls = 0
        list_sessions = client.list_sessions

        async def counting(**kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await list_sessions(**kwargs)

        monkeypatch.setattr(client, "list_sessions", counting)
        # Let whatever the user's actions started settle, then note the budget.
        await wait_until(pilot, lambda: calls >= 2, SLOW, "background refreshes")
        await pilot.pause(1.1)  # the status line reads the client once a second
        shown = status.rate_remaining
        left = client.last_rate_limit.remaining if client.last_rate_limit else None
        await wait_until(pilot, lambda: calls >= 5, SLOW, "more background refreshes")
        await pilot.pause(1.1)  # the status line reads the client once a second
        assert status.rate_remaining == shown
        assert client.last_rate_limit is not None and client.last_rate_limit.remaining == left
