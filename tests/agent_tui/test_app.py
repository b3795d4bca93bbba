"""Pilot tests of the app against the in-memory fake client (fast, no backend)."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Markdown, OptionList

from agent_tui.app.app import AgentApp
from agent_tui.app.screens.confirm import ConfirmScreen
from agent_tui.app.screens.connect_error import ConnectErrorScreen
from agent_tui.app.screens.first_run import FirstRunScreen
from agent_tui.app.screens.key_create import KeyCreateScreen
from agent_tui.app.screens.key_created import KeyCreatedScreen
from agent_tui.app.screens.keys import NEEDS_ADMIN, KeysScreen
from agent_tui.app.screens.main import MainScreen
from agent_tui.app.screens.text_input import TextInputScreen
from agent_tui.app.widgets.assistant_message import AssistantMessage
from agent_tui.app.widgets.chat_notice import ChatNotice
from agent_tui.app.widgets.chat_pane import ChatPane
from agent_tui.app.widgets.chat_view import ChatView, PrunedMarker
from agent_tui.app.widgets.connection_banner import ConnectionBanner
from agent_tui.app.widgets.prompt import PromptArea
from agent_tui.app.widgets.status_line import StatusLine
from agent_tui.app.widgets.tool_call import ToolCallBlock, clip_result, summarize_arguments
from agent_tui.app.widgets.user_message import UserMessage
from agent_tui.client import AgentApiError
from tests.agent_tui.fake_client import (
    FakeAgentClient,
    FakeConnection,
    FakeSessionHandle,
    wait_until,
)

SIZE = (120, 40)


def notifications(app: AgentApp) -> list[str]:
    return [n.message for n in app._notifications]


def chat_pane(app: AgentApp) -> ChatPane:
    return app.main_screen.query_one(ChatPane)


async def started(pilot, app: AgentApp) -> None:
    await wait_until(pilot, lambda: app.client is not None, what="connection")
    await wait_until(
        pilot, lambda: not app.main_screen.query_one("#session-list").loading, what="sessions"
    )


async def opened(pilot, app: AgentApp, session_id: str) -> None:
    pane = chat_pane(app)
    await wait_until(
        pilot,
        lambda: pane.session_id == session_id and not pane.chat.loading and pane.status != "—",
        what="session opened",
    )


async def send(pilot, app: AgentApp, text: str) -> None:
    """Put ``text`` in the prompt and press Enter (typing each key is slow under Pilot)."""
    app.screen.query_one(PromptArea).insert(text)
    await pilot.press("enter")


async def idle(pilot, app: AgentApp) -> None:
    pane = chat_pane(app)
    await wait_until(pilot, lambda: pane.status == "idle" and not pane.busy, what="turn to end")


async def test_reopening_shows_old_sessions_and_their_history() -> None:
    client = FakeAgentClient()
    old = client.add_session(
        "Older session", [("user", "hi there"), ("assistant", "Hello! **How** can I help?")]
    )
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, old.id)
        options = app.main_screen.query_one(OptionList)
        assert options.option_count == 1
        assert "Older session" in str(options.get_option_at_index(0).prompt)
        [user] = app.screen.query(UserMessage)
        assert str(user.content) == "hi there"
        [assistant] = app.screen.query(AssistantMessage)
        assert assistant.source == "Hello! **How** can I help?"
        assert app.main_screen.sub_title == "Older session"
        status = app.screen.query_one(StatusLine)
        assert (status.session_status, status.sandbox_state, status.connection) == (
            "idle",
            "ready",
            "connected",
        )


async def test_first_message_creates_a_session_and_streams_text_and_a_tool_block() -> None:
    client = FakeAgentClient()
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        assert app.screen.query_one("#chat-welcome").display
        await send(pilot, app, "list the files")
        await wait_until(pilot, lambda: client.sent, what="message sent")
        await idle(pilot, app)
        await wait_until(
            pilot, lambda: len(app.screen.query(AssistantMessage)) == 2, what="two text blocks"
        )
        [session] = client.sessions.values()
        assert session.title == "list the files"
        assert [str(u.content) for u in app.screen.query(UserMessage)] == ["list the files"]
        first, second = app.screen.query(AssistantMessage)
        assert first.source == "Let me look at the **workspace**.\n"
        assert second.source == "There is a `README.md` and a `src/` folder."
        block = app.screen.query_one(ToolCallBlock)
        assert block.status == "done" and block.collapsed and block.result == "README.md\nsrc/\n"
        assert "shell" in str(block.title) and "ls -la" in str(block.title)
        await pilot.click(block.query_one("CollapsibleTitle"))
        await pilot.pause()
        assert not block.collapsed
        assert app.screen.query_one(PromptArea).text == ""
        assert app.screen.query_one(StatusLine).tokens == 150


async def test_streamed_text_goes_through_markdown_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeAgentClient()
    deltas = [f"word{i} " for i in range(300)]
    client.default_script = [("text", d) for d in deltas] + [("end_text", None)]
    appends: list[str] = []
    original_append = Markdown.append

    def counting_append(self: Markdown, markdown: str):
        appends.append(markdown)
        return original_append(self, markdown)

    monkeypatch.setattr(Markdown, "append", counting_append)
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await send(pilot, app, "go")
        await idle(pilot, app)
        [message] = app.screen.query(AssistantMessage)
        assert message.source == "".join(deltas)
        # Fragments are batched by MarkdownStream: far fewer appends than deltas,
        # and the message is never re-rendered from scratch per token.
        assert 0 < len(appends) < len(deltas)


async def test_sending_while_busy_is_refused_with_a_notification() -> None:
    client = FakeAgentClient()
    client.default_script = [("text", "thinking…"), ("sleep", 30)]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await send(pilot, app, "first")
        await wait_until(pilot, lambda: chat_pane(app).status == "running", what="running")
        assert chat_pane(app).busy and app.screen.query_one(PromptArea).has_class("-busy")
        assert app.screen.query_one("#turn-indicator").display
        await send(pilot, app, "second")
        await pilot.pause()
        assert len(client.sent) == 1
        assert any("still working" in n for n in notifications(app))
        assert app.screen.query_one(PromptArea).text == "second"  # the draft is kept
        await pilot.press("escape")
        await idle(pilot, app)


async def test_a_message_the_server_never_got_returns_to_the_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = FakeAgentClient()
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await send(pilot, app, "first")
        await idle(pilot, app)

        async def unreachable(self, content: str):
            raise AgentApiError("CONNECTION_ERROR", "Cannot reach the Agent API")
            yield  # an async generator, like the real one

        monkeypatch.setattr(FakeSessionHandle, "stream_message", unreachable)
        await send(pilot, app, "second, lost in transit")
        prompt = app.screen.query_one(PromptArea)
        await wait_until(pilot, lambda: prompt.text == "second, lost in transit", what="given back")
        notice = app.screen.query(ChatNotice).last()
        assert "back in the prompt" in str(notice.render())
        assert [c for _, c in client.sent] == ["first"]


async def test_escape_interrupts_the_running_turn_and_says_so() -> None:
    client = FakeAgentClient()
    client.default_script = [("text", "Working on it"), ("sleep", 30), ("text", "never shown")]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await send(pilot, app, "long job")
        await wait_until(pilot, lambda: app.screen.query(AssistantMessage), what="streamed text")
        await pilot.press("escape")
        await idle(pilot, app)
        await wait_until(pilot, lambda: app.screen.query(ChatNotice), what="notice")
        notice = app.screen.query_one(ChatNotice)
        assert notice.kind == "interrupted" and "Interrupted" in str(notice.content)
        assert app.screen.query_one(AssistantMessage).source == "Working on it"
        assert any("interrupted" in n for n in notifications(app))
        # Escape when idle does nothing harmful.
        await pilot.press("escape")
        await pilot.pause()
        assert len(app.screen.query(ChatNotice)) == 1


async def test_switching_sessions_reloads_history_and_follows_the_new_one() -> None:
    client = FakeAgentClient()
    first = client.add_session("First", [("user", "one"), ("assistant", "reply one")])
    second = client.add_session("Second", [("user", "two"), ("assistant", "reply two")])
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, second.id)  # newest first
        assert [str(u.content) for u in app.screen.query(UserMessage)] == ["two"]
        options = app.main_screen.query_one(OptionList)
        options.focus()
        options.highlighted = options.get_option_index(first.id)
        await pilot.press("enter")
        await opened(pilot, app, first.id)
        assert [str(u.content) for u in app.screen.query(UserMessage)] == ["one"]
        assert [m.source for m in app.screen.query(AssistantMessage)] == ["reply one"]
        assert app.main_screen.sub_title == "First"
        assert app.focused is app.screen.query_one(PromptArea)
        # Events of the session we left are not shown; the new one's are.
        await client.emit(second, "message.user", {"messageId": "x", "content": "elsewhere"})
        await client.emit(first, "message.user", {"messageId": "y", "content": "here"})
        await wait_until(pilot, lambda: len(app.screen.query(UserMessage)) == 2, what="live event")
        assert [str(u.content) for u in app.screen.query(UserMessage)] == ["one", "here"]


async def test_new_rename_pause_resume_and_delete_with_confirmation() -> None:
    client = FakeAgentClient()
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: client.sessions, what="session created")
        [session] = client.sessions.values()
        await opened(pilot, app, session.id)

        await pilot.press("f2")
        await wait_until(
            pilot, lambda: isinstance(app.screen, TextInputScreen), what="rename dialog"
        )
        app.screen.query_one(Input).value = "Renamed"
        await pilot.press("enter")
        await wait_until(pilot, lambda: session.title == "Renamed", what="rename")
        await wait_until(pilot, lambda: app.main_screen.sub_title == "Renamed", what="title shown")

        await pilot.press("f4")
        await wait_until(pilot, lambda: session.status == "paused", what="pause")
        await wait_until(
            pilot, lambda: app.screen.query_one(StatusLine).sandbox_state == "paused", what="paused"
        )
        await pilot.press("f4")
        await wait_until(pilot, lambda: session.status == "idle", what="resume")

        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("escape")  # cancel first: nothing happens
        await pilot.pause()
        assert session.status == "idle"
        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: session.status == "terminated", what="delete")
        await wait_until(
            pilot, lambda: chat_pane(app).status == "terminated", what="terminated status"
        )
        await send(pilot, app, "hello?")
        await pilot.pause()
        assert not client.sent
        assert any("deleted" in n for n in notifications(app))


async def test_create_and_revoke_a_key() -> None:
    client = FakeAgentClient()
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen), what="keys screen")
        table = app.screen.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="key list")
        assert "(this key)" in str(table.get_row_at(0)[2])

        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, KeyCreateScreen), what="create form")
        await pilot.press(*"ci")
        await pilot.click("#scope-admin")
        await pilot.click("#create")
        await wait_until(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), what="new key")
        created = next(k for k in client.keys.values() if k.name == "ci")
        assert created.scopes == ["sessions", "admin"]
        assert str(app.screen.query_one("#new-key").content) == created.key
        await pilot.click("#copy")
        assert app.clipboard == created.key
        await pilot.click("#done")
        keys_screen = app.screen
        assert isinstance(keys_screen, KeysScreen)
        await wait_until(pilot, lambda: table.row_count == 2, what="two keys")

        table.move_cursor(row=table.get_row_index(created.id))
        await pilot.press("r")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmScreen), what="revoke confirmation"
        )
        await pilot.click("#confirm")
        await wait_until(
            pilot, lambda: client.keys[created.id].revoked_at is not None, what="revoked"
        )
        await wait_until(
            pilot, lambda: "revoked" in str(table.get_row(created.id)[2]), what="revoked row"
        )
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_a_key_without_admin_scope_sees_the_list_and_a_clear_message() -> None:
    client = FakeAgentClient(scopes=["sessions"])
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen), what="keys screen")
        await wait_until(
            pilot, lambda: app.screen.query_one(DataTable).row_count == 1, what="key list"
        )
        notice = app.screen.query_one("#keys-notice")
        assert notice.display and "admin scope" in str(notice.content)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, KeysScreen)
        assert NEEDS_ADMIN in notifications(app)


async def test_reconnect_banner_when_the_backend_goes_away_and_comes_back() -> None:
    client = FakeAgentClient()
    session = client.add_session("Live")
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        banner = app.screen.query_one(ConnectionBanner)
        assert not banner.display
        client.go_offline()
        await wait_until(pilot, lambda: banner.display, what="banner")
        assert "reconnecting" in str(banner.content)
        assert app.screen.query_one(StatusLine).connection == "reconnecting"
        client.go_online()
        await wait_until(pilot, lambda: not banner.display, what="banner gone")
        assert app.screen.query_one(StatusLine).connection == "connected"
        assert any("Reconnected" in n for n in notifications(app))


async def test_prompt_newline_and_history() -> None:
    client = FakeAgentClient()
    session = client.add_session("S")
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        prompt = app.screen.query_one(PromptArea)
        await pilot.press(*"one", "ctrl+j", *"two")
        assert prompt.text == "one\ntwo"
        await pilot.press("enter")
        await idle(pilot, app)
        assert client.sent == [(session.id, "one\ntwo")]
        await pilot.press("d")
        await pilot.press("up")
        assert prompt.text == "one\ntwo"
        await pilot.press("down", "down")
        assert prompt.text == "d"


async def test_turn_error_shows_an_inline_line_and_a_notification() -> None:
    client = FakeAgentClient()
    session = client.add_session("S")
    client.default_script = [("error", ("MODEL_OVERLOADED", "The model is overloaded"))]
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await opened(pilot, app, session.id)
        await send(pilot, app, "hi")
        await wait_until(pilot, lambda: app.screen.query(ChatNotice), what="error line")
        notice = app.screen.query_one(ChatNotice)
        assert notice.kind == "error" and "overloaded" in str(notice.content)
        assert any("overloaded" in n for n in notifications(app))
        await idle(pilot, app)


async def test_first_run_asks_for_a_model_key_then_starts() -> None:
    connection = FakeConnection(needs_setup=True)
    app = AgentApp(connection)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, FirstRunScreen) and app.screen.query("#anthropic-key"),
            what="first run",
        )
        key_input = app.screen.query_one("#anthropic-key", Input)
        await wait_until(pilot, lambda: app.focused is key_input, what="focus on the key")
        await pilot.press("enter")
        error = app.screen.query_one("#first-run-error")
        await wait_until(
            pilot, lambda: "Enter an API key" in str(error.content), what="the empty-key error"
        )
        key_input.value = "sk-ant-test-123456"
        await pilot.press("enter")
        await started(pilot, app)
        assert connection.saved == ("sk-ant-test-123456", "")
        assert isinstance(app.screen, MainScreen)


async def test_connection_failure_is_explained_on_screen_and_retry_works() -> None:
    error = AgentApiError("INVALID_API_KEY", "Invalid API key. Check the API key.", status=401)
    connection = FakeConnection(open_error=error)
    app = AgentApp(connection)
    async with app.run_test(size=SIZE) as pilot:
        # The screen is pushed before it is composed: wait for its widgets too.
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ConnectErrorScreen) and bool(app.screen.query("#retry")),
            what="error screen",
        )
        assert "rejected" in str(app.screen.query_one("#connect-error-message").content)
        await pilot.press("r")
        await started(pilot, app)
        assert connection.open_calls == 2


async def test_limitations_are_reported() -> None:
    connection = FakeConnection(limitations=["bubblewrap (bwrap) is not installed"])
    app = AgentApp(connection)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        assert any("bwrap" in n for n in notifications(app))


async def test_long_transcripts_are_pruned() -> None:
    app = AgentApp(FakeConnection())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        view = ChatView(max_weight=20)
        await app.screen.mount(view)
        for i in range(60):
            await view.add_user(f"message {i}")
        assert len(view.query(UserMessage)) <= 20
        assert view.pruned >= 40
        assert "earlier items hidden" in str(view.query_one(PrunedMarker).content)
        assert str(view.query(UserMessage).last().content) == "message 59"


async def test_command_palette_lists_every_action() -> None:
    app = AgentApp(FakeConnection())
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in (
            "New session",
            "Rename session",
            "Delete session",
            "Pause or resume session",
            "Interrupt turn",
            "API keys",
            "Refresh sessions",
            "Theme",
        ):
            assert any(t.startswith(title) for t in titles), title
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen), what="keys screen")
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Create API key", "Revoke API key"} <= titles


def test_tool_summaries_and_clipping() -> None:
    assert summarize_arguments({"command": "ls -la\nrm x"}) == "ls -la"
    assert summarize_arguments({}) == ""
    assert summarize_arguments({"n": 3}) == '{"n": 3}'
    assert clip_result("a\nb\n") == "a\nb"
    long = "x" * 5000
    assert clip_result(long).endswith("1,000 more characters not shown")


async def connect_error_text(connection: FakeConnection) -> str:
    app = AgentApp(connection)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ConnectErrorScreen) and app.screen.query("#retry"),
            what="error screen",
        )
        await pilot.pause()
        return " ".join(
            str(w.content) for w in app.screen.query("#connect-error-message, .dialog-hint")
        )


async def test_connection_errors_say_one_thing_once() -> None:
    import httpx

    from agent_tui.app.connection import RemoteConnection
    from agent_tui.client.errors import connection_error
    from agent_tui.embedded import EmbeddedStartError

    unreachable = FakeConnection(
        open_error=connection_error("http://127.0.0.1:9", httpx.ConnectError("refused"))
    )
    unreachable.mode = "remote"
    text = await connect_error_text(unreachable)
    assert text.count("Cannot reach") == 1 and text.count("Check") == 1, text

    wrong_key = FakeConnection(
        open_error=AgentApiError("INVALID_API_KEY", "Unknown API key", status=401)
    )
    wrong_key.mode = "remote"
    text = await connect_error_text(wrong_key)
    assert "rejected" in text and text.count("--api-key") == 1, text

    try:
        await RemoteConnection("http://127.0.0.1:9", None).open()
    except AgentApiError as exc:
        no_key = FakeConnection(open_error=exc)
    no_key.mode = "remote"
    text = await connect_error_text(no_key)
    assert "No API key" in text and text.count("--api-key") == 1 and "rejected" not in text, text

    second = FakeConnection(
        open_error=EmbeddedStartError(
            "Another agent-tui is already running on /data. Close it first, or connect to "
            "one backend from both with `agent-tui serve` and --remote."
        )
    )
    text = await connect_error_text(second)
    assert "already running" in text and "disk" not in text and "JSON" not in text, text

    broken = FakeConnection(open_error=EmbeddedStartError("The store failed: boom"))
    assert "agent-tui.log" in await connect_error_text(broken)


def footer_actions(app: AgentApp) -> set[str]:
    """The actions the active screen's own footer shows (none without one: a modal
    without a footer leaves the one of the screen behind it in view)."""
    from textual.widgets import Footer
    from textual.widgets._footer import FooterKey

    return {key.action for footer in app.screen.query(Footer) for key in footer.query(FooterKey)}


async def test_dialogs_show_their_own_keys_in_the_footer() -> None:
    client = FakeAgentClient()
    client.add_session("Older session", [("user", "hi")])
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        assert "new_session" in footer_actions(app)
        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await wait_until(pilot, lambda: footer_actions(app), what="footer keys")
        actions = footer_actions(app)
        assert {"dismiss(True)", "dismiss(False)"} <= actions and "new_session" not in actions
        await pilot.press("n")
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, TextInputScreen), what="rename")
        await wait_until(pilot, lambda: footer_actions(app), what="footer keys")
        assert "dismiss(None)" in footer_actions(app)
        assert "new_session" not in footer_actions(app)
        await pilot.press("escape")
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, KeysScreen), what="keys")
        app.push_screen(KeyCreatedScreen("laptop", "aa_live_" + "x" * 32, ["sessions"]))
        await wait_until(pilot, lambda: isinstance(app.screen, KeyCreatedScreen), what="key")
        await wait_until(pilot, lambda: footer_actions(app), what="footer keys")
        assert {"copy", "dismiss(None)"} <= footer_actions(app)


async def test_up_recalls_prompts_from_an_earlier_run(tmp_path) -> None:
    history = tmp_path / "prompt-history.jsonl"
    client = FakeAgentClient()
    app = AgentApp(FakeConnection(client), history_path=history)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        await send(pilot, app, "list the files")
        await idle(pilot, app)
        await send(pilot, app, "and now\ntwo lines")
        await idle(pilot, app)

    again = AgentApp(FakeConnection(FakeAgentClient()), history_path=history)
    async with again.run_test(size=SIZE) as pilot:
        await started(pilot, again)
        prompt = again.screen.query_one(PromptArea)
        prompt.focus()
        await pilot.press("up")
        assert prompt.text == "and now\ntwo lines"
        prompt.move_cursor((0, 0))
        await pilot.press("up")
        assert prompt.text == "list the files"


async def test_new_opencode_creates_an_opencode_session_and_the_status_line_names_it() -> None:
    client = FakeAgentClient()
    app = AgentApp(FakeConnection(client))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot, app)
        app.screen.query_one(PromptArea).load_text("/new opencode")
        await pilot.press("enter")
        await wait_until(pilot, lambda: client.sessions, what="session created")
        [session] = client.sessions.values()
        assert session.engine == "opencode"
        await opened(pilot, app, session.id)
        status = app.screen.query_one(StatusLine)
        await wait_until(pilot, lambda: status.engine == "opencode", what="engine shown")
        assert "opencode" in str(status.render())
        await pilot.press("ctrl+n")
        await wait_until(pilot, lambda: len(client.sessions) == 2, what="second session")
        await wait_until(pilot, lambda: status.engine == "builtin", what="builtin set")
        assert "opencode" not in str(status.render())
