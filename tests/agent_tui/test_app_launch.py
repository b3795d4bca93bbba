"""The app's first minute: nothing typed is lost, the last session comes back.

Pilot tests against the in-memory fake client (a ``FakeConnection`` whose
``open()`` waits on a gate plays a backend that is still starting), and one
against the real embedded backend for a relaunch.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import termios
from pathlib import Path

import pytest

from agent_tui.app.app import AgentApp
from agent_tui.app.connection import EmbeddedConnection
from agent_tui.app.screens.connect_error import ConnectErrorScreen
from agent_tui.app.typeahead import keep_typeahead
from agent_tui.app.widgets.assistant_message import AssistantMessage
from agent_tui.app.widgets.chat_pane import ChatPane
from agent_tui.app.widgets.outbox import Outbox, PendingMessage
from agent_tui.app.widgets.prompt import PromptArea
from agent_tui.app.widgets.sessions_pane import FINISHED_MARK, SessionsPane
from agent_tui.app.widgets.user_message import UserMessage
from agent_tui.client import AgentApiError
from backend.settings import Settings, SettingsError
from tests.agent_tui.fake_client import FakeAgentClient, FakeConnection, wait_until
from tests.fakes.fake_anthropic import FakeAnthropic, reply

SIZE = (120, 40)
SLOW = 20.0  # the real backend on a loaded machine


def pane(app: AgentApp) -> ChatPane:
    return app.main_screen.query_one(ChatPane)


def outbox(app: AgentApp) -> Outbox:
    return app.main_screen.query_one(Outbox)


def reason_text(app: AgentApp) -> str:
    return str(outbox(app).query_one("#outbox-reason").content)


async def type_and_enter(pilot, app: AgentApp, text: str) -> None:
    app.main_screen.query_one(PromptArea).insert(text)
    await pilot.press("enter")


async def test_enter_before_the_backend_is_ready_queues_the_message_then_sends_it() -> None:
    client = FakeAgentClient()
    gate = asyncio.Event()
    app = AgentApp(FakeConnection(client, gate=gate))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.main_screen.status.connection == "starting")
        await type_and_enter(pilot, app, "hello")
        await type_and_enter(pilot, app, "and then this")

        # Pending: shown, not sent, and the prompt is free again.
        await wait_until(pilot, lambda: len(app.screen.query(PendingMessage)) == 2, what="pending")
        assert outbox(app).texts == ["hello", "and then this"]
        assert "waiting for the backend to start" in reason_text(app)
        assert app.main_screen.query_one(PromptArea).text == ""
        assert client.sent == [] and client.sessions == {}

        gate.set()
        # Sent in order, one turn after the other, into a session made for them.
        await wait_until(pilot, lambda: len(client.sent) == 2, what="both sent")
        assert [text for _sid, text in client.sent] == ["hello", "and then this"]
        assert len(client.sessions) == 1
        await wait_until(pilot, lambda: len(app.screen.query(UserMessage)) == 2, what="echoes")
        await wait_until(pilot, lambda: not outbox(app).display, what="outbox hidden")
        assert not app.screen.query(PendingMessage)


async def test_a_backend_that_fails_to_start_keeps_the_message_and_says_why() -> None:
    client = FakeAgentClient()
    gate = asyncio.Event()
    connection = FakeConnection(
        client,
        gate=gate,
        open_error=AgentApiError("STORE_UNAVAILABLE", "the database file is locked", status=503),
    )
    app = AgentApp(connection)
    async with app.run_test(size=SIZE) as pilot:
        await type_and_enter(pilot, app, "do not lose me")
        await wait_until(pilot, lambda: outbox(app).texts == ["do not lose me"], what="queued")
        gate.set()
        # The screen is pushed before it is composed: wait for its widgets too.
        await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, ConnectErrorScreen)
                and bool(app.screen.query("#connect-error-message"))
            ),
            what="error screen",
        )
        dialog = str(app.screen.query_one("#connect-error-message").content)
        assert "the database file is locked" in dialog and "1 message waiting" in dialog
        # Under the dialog: the message is still there, with the reason.
        assert outbox(app).texts == ["do not lose me"]
        assert "Not sent yet" in reason_text(app) and "database file is locked" in reason_text(app)
        assert client.sent == []

        await pilot.press("r")  # retry: this time the backend starts
        await wait_until(pilot, lambda: client.sent, what="sent after the retry")
        assert [text for _sid, text in client.sent] == ["do not lose me"]
        assert outbox(app).texts == []


async def test_a_message_sent_while_reconnecting_waits_for_the_connection() -> None:
    client = FakeAgentClient()
    session = client.add_session("Work", [("user", "hi"), ("assistant", "Hello.")])
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: pane(app).session_id == session.id, what="opened")
        await wait_until(pilot, lambda: pane(app).status == "idle", what="loaded")
        client.go_offline()
        await wait_until(pilot, lambda: outbox(app).holding, what="holding")
        await type_and_enter(pilot, app, "are you back?")
        await wait_until(pilot, lambda: outbox(app).texts == ["are you back?"], what="queued")
        assert "come back" in reason_text(app) and client.sent == []

        client.go_online()
        await wait_until(pilot, lambda: client.sent, what="sent")
        assert client.sent == [(session.id, "are you back?")]


async def test_start_on_a_new_session_leaves_the_last_one_closed() -> None:
    client = FakeAgentClient()
    old = client.add_session("Yesterday", [("user", "old question"), ("assistant", "Old answer.")])
    app = AgentApp(FakeConnection(client), open_last_session=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: old.id in app.main_screen.sessions.sessions, what="list")
        await pilot.pause(0.1)
        assert pane(app).session_id is None and not app.screen.query(UserMessage)
        assert app.main_screen.query_one("#chat-welcome").display

        await type_and_enter(pilot, app, "a fresh start")
        await wait_until(pilot, lambda: client.sent, what="sent")
        [(session_id, text)] = client.sent
        assert text == "a fresh start" and session_id != old.id


def test_the_start_session_setting() -> None:
    assert Settings.from_env({}).start_session == "last"
    assert Settings.from_env({"AGENT_TUI_START_SESSION": "new"}).start_session == "new"
    with pytest.raises(SettingsError, match="AGENT_TUI_START_SESSION"):
        Settings.from_env({"AGENT_TUI_START_SESSION": "newest"})


async def test_a_turn_that_ends_out_of_sight_marks_its_session() -> None:
    client = FakeAgentClient()
    other = client.add_session("Other")
    busy = client.add_session("Busy")  # newest: opened at launch
    release = asyncio.Event()
    client.scripts["long job"] = [("text", "working…"), ("wait", release), ("end_text", None)]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: pane(app).session_id == busy.id, what="opened")
        await wait_until(pilot, lambda: pane(app).status == "idle", what="loaded")
        await type_and_enter(pilot, app, "long job")
        await wait_until(pilot, lambda: pane(app).status == "running", what="running")

        sessions = app.main_screen.query_one(SessionsPane)
        app.main_screen.open_session(other.id)
        await wait_until(pilot, lambda: pane(app).session_id == other.id, what="switched")
        assert busy.id not in sessions.finished

        release.set()
        await wait_until(pilot, lambda: busy.id in sessions.finished, what="marked")
        row = sessions.option_list.get_option(busy.id).prompt
        assert str(row).startswith(FINISHED_MARK) and "idle" in str(row)
        assert other.id not in sessions.finished

        app.main_screen.open_session(busy.id)  # looking at it clears the mark
        await wait_until(pilot, lambda: busy.id not in sessions.finished, what="cleared")
        await wait_until(pilot, lambda: app.screen.query(AssistantMessage), what="its reply")
        assert not str(sessions.option_list.get_option(busy.id).prompt).startswith(FINISHED_MARK)


async def test_relaunch_opens_the_last_session_with_its_history(tmp_path: Path) -> None:
    """The real embedded backend: send at launch, quit, launch again."""
    with FakeAnthropic() as model:
        settings = Settings(
            data_dir=tmp_path / "data",
            config_dir=tmp_path / "config",
            anthropic_api_key="test",
            anthropic_base_url=model.url,
            unsafe_local_sandbox=True,
        )
        model.enqueue(reply().text("Hi! **Ready** when you are.").stop("end_turn"))
        first = AgentApp(EmbeddedConnection(settings))
        async with first.run_test(size=SIZE) as pilot:
            await type_and_enter(pilot, first, "hello")  # at once, ready or not
            await wait_until(pilot, lambda: first.screen.query(AssistantMessage), SLOW, "reply")
            await wait_until(pilot, lambda: pane(first).status == "idle", SLOW, "turn end")

        second = AgentApp(EmbeddedConnection(settings))
        async with second.run_test(size=SIZE) as pilot:
            await wait_until(
                pilot, lambda: len(second.screen.query(UserMessage)) == 1, SLOW, "history"
            )
            await wait_until(
                pilot,
                lambda: any("Ready" in m.source for m in second.screen.query(AssistantMessage)),
                SLOW,
                "reply",
            )
            assert str(second.screen.query_one(UserMessage).content) == "hello"
            assert len(second.screen.query(AssistantMessage)) == 1


def test_typeahead_keeps_enter_as_enter_and_restores_the_terminal() -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        os.write(master, b"hello\r")  # cooked mode: the terminal turns this \r into \n
        assert select.select([slave], [], [], 10)[0]  # the line has reached the terminal
        with os.fdopen(os.dup(slave), "r") as stream, keep_typeahead(stream) as typeahead:
            assert typeahead.lines == ["hello"]  # handed to the app, out of the buffer
            os.write(master, b"more\r")
            attrs = termios.tcgetattr(slave)
            attrs[3] &= ~termios.ICANON  # what Textual's raw mode does, for this read
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            assert os.read(slave, 100) == b"more\r"  # Enter stays Enter: not Ctrl+J
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)
