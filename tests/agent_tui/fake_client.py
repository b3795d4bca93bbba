"""A fake ``AgentClient`` for the app's fast tests and snapshots.

It implements the client API the app uses (``agent_tui/client``) in memory,
with the real wire models and ``Event`` class. A turn is a script of steps run
as a task, as the backend's session actor runs it, so followers, interrupts
and a busy session behave like the real thing. ``go_offline()`` /
``go_online()`` make every follower report ``RECONNECTING`` then
``CONNECTED``, like the real client does when the backend goes away.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent_tui.client import AgentApiError, ConnectionState, RateLimitInfo
from backend.events import Event
from backend.schemas import (
    CompactionOut,
    KeyCreated,
    KeyOut,
    MessageOut,
    ModelList,
    ModelOut,
    PermissionOut,
    SandboxInfo,
    SessionOut,
    SessionUsage,
    ToolCallOut,
)

# A step of a scripted turn: ("text", "fragment"), ("end_text", None),
# ("tool", (name, arguments, result, is_error)), ("sleep", seconds), ("error", (code, message)),
# ("event", (type, data)), ("tool_start", (id, name, arguments)),
# ("tool_end", (id, name, arguments, result, is_error)), ("wait", asyncio.Event).
Step = tuple[str, Any]

DEFAULT_SCRIPT: list[Step] = [
    ("text", "Let me look "),
    ("text", "at the **workspace**.\n"),
    ("end_text", None),
    ("tool", ("shell", {"command": "ls -la"}, "README.md\nsrc/\n", False)),
    ("text", "There is a `README.md` "),
    ("text", "and a `src/` folder."),
    ("end_text", None),
]


def now_iso(offset_seconds: float = 0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=offset_seconds)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FakeSession:
    """One session's state on the fake server."""

    id: str
    title: str | None
    status: str = "idle"
    sandbox_state: str = "ready"
    created_at: str = field(default_factory=now_iso)
    last_activity_at: str = field(default_factory=now_iso)
    events: list[Event] = field(default_factory=list)
    messages: list[MessageOut] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    turn: asyncio.Task[None] | None = None
    engine: str = "builtin"
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    model: str = "fake-model"
    thinking: bool = False
    permission_mode: str = "auto"
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # requestId -> request
    answers: dict[str, str] = field(default_factory=dict)  # requestId -> decision
    compactions: int = 0

    def out(self) -> SessionOut:
        return SessionOut(
            id=self.id,
            status=self.status,
            title=self.title,
            repo=None,
            model=self.model,
            thinking=self.thinking,
            permission_mode=self.permission_mode,
            pending_permissions=[PermissionOut.model_validate(p) for p in self.pending.values()],
            pending_permission_count=len(self.pending),
            engine=self.engine,
            created_at=self.created_at,
            last_activity_at=self.last_activity_at,
            sandbox=SandboxInfo(provider="fake", state=self.sandbox_state, id="sbx-" + self.id[:8]),
            usage=SessionUsage(
                input_tokens=self.input_tokens,
                output_tokens=self.output_tokens,
                sandbox_seconds=0.0,
                messages=len(self.messages),
            ),
            last_event_id=len(self.events),
        )


class FakeAgentClient:
    """In-memory stand-in for ``agent_tui.client.AgentClient``."""

    def __init__(self, *, scopes: list[str] | None = None, step_delay: float = 0.0) -> None:
        self.sessions: dict[str, FakeSession] = {}
        self.keys: dict[str, KeyOut] = {}
        self.scripts: dict[str, list[Step]] = {}  # prompt -> script; else DEFAULT_SCRIPT
        self.default_script: list[Step] = DEFAULT_SCRIPT
        self.step_delay = step_delay
        self.online = True
        self._online = asyncio.Event()
        self._online.set()
        self.last_rate_limit: RateLimitInfo | None = RateLimitInfo(
            limit=100, remaining=100, reset=0.0
        )
        self.sent: list[tuple[str, str]] = []
        self.updates: list[tuple[Any, ...]] = []  # (session id, title, model, thinking, mode)
        self.answered: list[tuple[str, str, str]] = []  # (session id, request id, decision)
        self.files: dict[str, str] = {}  # workspace path -> text, for every session
        self.closed = False
        self.api_key = "aa_live_" + "F" * 28 + "self"
        own = self._make_key("this app", scopes or ["sessions", "admin"], key=self.api_key)
        self.keys[own.id] = own

    # ---- test controls

    def go_offline(self) -> None:
        """Followers lose their connection and report RECONNECTING."""
        self.online = False
        self._online.clear()
        for session in self.sessions.values():
            asyncio.get_running_loop().create_task(self._wake(session))

    def go_online(self) -> None:
        """Followers reconnect and report CONNECTED."""
        self.online = True
        self._online.set()

    def add_session(
        self, title: str | None = None, history: list[tuple[str, str]] | None = None
    ) -> FakeSession:
        """A session that already exists, with (role, text) messages as history."""
        # Later sessions are newer, as the list is sorted newest first.
        session = FakeSession(
            id=str(uuid.uuid4()), title=title, created_at=now_iso(len(self.sessions) * 0.01)
        )
        for role, text in history or []:
            session.messages.append(
                _message(role, text, stop_reason="end_turn" if role == "assistant" else None)
            )
        self.sessions[session.id] = session
        return session

    async def _wake(self, session: FakeSession) -> None:
        async with session.changed:
            session.changed.notify_all()

    def _count(self) -> None:
        info = self.last_rate_limit
        if info is not None:
            self.last_rate_limit = RateLimitInfo(info.limit, max(0, info.remaining - 1), info.reset)

    def _check_online(self) -> None:
        self._count()
        if not self.online:
            raise AgentApiError("CONNECTION_ERROR", "Cannot reach the Agent API at fake (offline)")

    def _session(self, session_id: str) -> FakeSession:
        self._check_online()
        try:
            return self.sessions[session_id]
        except KeyError:
            raise AgentApiError("SESSION_NOT_FOUND", "Session not found", status=404) from None

    async def emit(self, session: FakeSession, kind: str, data: dict[str, Any]) -> Event:
        event = Event(
            type=kind,
            seq=len(session.events) + 1,
            session_id=session.id,
            timestamp=now_iso(),
            data=data,
        )
        session.events.append(event)
        session.last_activity_at = event.timestamp
        async with session.changed:
            session.changed.notify_all()
        return event

    # ---- AgentClient API

    async def list_models(self) -> ModelList:
        self._check_online()
        return ModelList(
            models=[
                ModelOut(
                    id="fake-model",
                    display_name="Fake Model",
                    context_window=200_000,
                    thinking=True,
                    compaction=False,
                ),
                ModelOut(
                    id="fake-small",
                    display_name="Fake Small",
                    context_window=100_000,
                    thinking=False,
                    compaction=False,
                ),
            ],
            default="fake-model",
            source="endpoint",
        )

    async def aclose(self) -> None:
        self.closed = True

    async def health(self) -> dict[str, Any]:
        self._check_online()
        return {"status": "ok", "version": "fake", "timestamp": now_iso()}

    def _make_key(
        self,
        name: str,
        scopes: list[str],
        *,
        environment: str = "live",
        expires_at: datetime | None = None,
        key: str | None = None,
    ) -> KeyCreated:
        key = key or f"aa_{environment}_" + uuid.uuid4().hex[:32]
        return KeyCreated(
            id=str(uuid.uuid4()),
            user_id="local",
            name=name,
            prefix=key[:12],
            last4=key[-4:],
            environment=environment,
            scopes=scopes,
            created_at=now_iso(),
            last_used_at=None,
            expires_at=expires_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            if expires_at
            else None,
            revoked_at=None,
            key=key,
        )

    def _own_scopes(self) -> list[str]:
        own = next(
            k
            for k in self.keys.values()
            if self.api_key.endswith(k.last4) and self.api_key.startswith(k.prefix)
        )
        return own.scopes

    async def list_keys(self) -> list[KeyOut]:
        self._check_online()
        return [KeyOut.model_validate(k.model_dump()) for k in self.keys.values()]

    async def create_key(
        self,
        name: str,
        *,
        scopes: list[str] | None = None,
        environment: str = "live",
        expires_at: datetime | None = None,
    ) -> KeyCreated:
        self._check_online()
        if "admin" not in self._own_scopes():
            raise AgentApiError("FORBIDDEN", "This key lacks the admin scope", status=403)
        created = self._make_key(
            name, scopes or ["sessions"], environment=environment, expires_at=expires_at
        )
        self.keys[created.id] = created
        return created

    async def revoke_key(self, key_id: str) -> None:
        self._check_online()
        if "admin" not in self._own_scopes():
            raise AgentApiError("FORBIDDEN", "This key lacks the admin scope", status=403)
        key = self.keys[key_id]
        if key.revoked_at is None:
            self.keys[key_id] = key.model_copy(update={"revoked_at": now_iso()})

    def session(self, session_id: str) -> FakeSessionHandle:
        return FakeSessionHandle(self, session_id)

    async def create_session(
        self,
        *,
        title: str | None = None,
        engine: str | None = None,
        on_event: Callable[[Event], Any] | None = None,
        **_: Any,
    ) -> FakeSessionHandle:
        self._check_online()
        session = FakeSession(
            id=str(uuid.uuid4()),
            title=title,
            status="starting",
            sandbox_state="starting",
            engine=engine or "builtin",
        )
        self.sessions[session.id] = session
        for kind, data in (
            ("session.created", {"sessionId": session.id}),
            ("session.progress", {"message": "creating sandbox"}),
        ):
            event = await self.emit(session, kind, data)
            if on_event is not None:
                on_event(event)
        session.status, session.sandbox_state = "idle", "ready"
        event = await self.emit(session, "session.ready", {"sessionId": session.id})
        if on_event is not None:
            on_event(event)
        return FakeSessionHandle(self, session.id, session.out())

    async def list_sessions(
        self,
        *,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        background: bool = False,
    ) -> tuple[list[SessionOut], str | None]:
        self._check_online()
        sessions = sorted(self.sessions.values(), key=lambda s: s.created_at, reverse=True)
        return [s.out() for s in sessions if status is None or s.status == status][:limit], None

    async def get_session(self, session_id: str, *, background: bool = False) -> SessionOut:
        return self._session(session_id).out()

    # ---- turns

    async def run_turn(self, session: FakeSession, content: str) -> None:
        """The scripted turn, emitting the contract's events."""
        user = _message("user", content)
        session.messages.append(user)
        assistant_id = str(uuid.uuid4())
        texts: list[str] = []
        block: list[str] = []
        calls: list[ToolCallOut] = []
        stop_reason = "end_turn"
        await self.emit(session, "session.running", {"sessionId": session.id})
        await self.emit(session, "message.user", {"messageId": user.id, "content": content})
        try:
            for kind, arg in self.scripts.get(content, self.default_script):
                if self.step_delay:
                    await asyncio.sleep(self.step_delay)
                if kind == "text":
                    block.append(arg)
                    await self.emit(
                        session,
                        "message.assistant",
                        {"messageId": assistant_id, "content": arg, "isPartial": True},
                    )
                elif kind == "end_text":
                    texts.append("".join(block))
                    await self.emit(
                        session,
                        "message.assistant",
                        {"messageId": assistant_id, "content": "".join(block), "isPartial": False},
                    )
                    block = []
                elif kind == "tool":
                    name, arguments, result, is_error = arg
                    tool_id = "toolu_" + uuid.uuid4().hex[:12]
                    base = {
                        "messageId": assistant_id,
                        "toolId": tool_id,
                        "toolName": name,
                        "arguments": arguments,
                    }
                    await self.emit(session, "message.tool", {**base, "status": "calling"})
                    await self.emit(
                        session,
                        "message.tool",
                        {**base, "status": "result", "result": result, "isError": is_error},
                    )
                    calls.append(
                        ToolCallOut(
                            id=tool_id,
                            name=name,
                            arguments=arguments,
                            result=result,
                            is_error=is_error,
                        )
                    )
                elif kind == "event":
                    # Any other event, e.g. ("event", ("message.thinking", {...})).
                    event_type, data = arg
                    await self.emit(session, event_type, {"messageId": assistant_id, **data})
                elif kind == "tool_start":
                    tool_id, name, arguments = arg
                    await self.emit(
                        session,
                        "message.tool",
                        {
                            "messageId": assistant_id,
                            "toolId": tool_id,
                            "toolName": name,
                            "arguments": arguments,
                            "status": "calling",
                        },
                    )
                elif kind == "tool_end":
                    tool_id, name, arguments, result, is_error = arg
                    await self.emit(
                        session,
                        "message.tool",
                        {
                            "messageId": assistant_id,
                            "toolId": tool_id,
                            "toolName": name,
                            "arguments": arguments,
                            "status": "result",
                            "result": result,
                            "isError": is_error,
                        },
                    )
                elif kind == "ask":
                    # A permission request: waits until answer_permission is called.
                    tool_id, tool, tool_input = arg
                    request_id = str(uuid.uuid4())
                    request = {
                        "requestId": request_id,
                        "messageId": assistant_id,
                        "toolId": tool_id,
                        "tool": tool,
                        "input": tool_input,
                        "createdAt": now_iso(),
                    }
                    session.pending[request_id] = request
                    await self.emit(session, "permission.requested", request)
                    async with session.changed:
                        await session.changed.wait_for(
                            lambda rid=request_id: rid in session.answers
                        )
                    await self.emit(
                        session,
                        "permission.answered",
                        {
                            "requestId": request_id,
                            "toolId": tool_id,
                            "decision": session.answers[request_id],
                        },
                    )
                elif kind == "wait":
                    await arg.wait()  # an asyncio.Event the test sets
                elif kind == "sleep":
                    await asyncio.sleep(arg)
                elif kind == "error":
                    code, message = arg
                    await self.emit(
                        session, "error", {"code": code, "message": message, "details": {}}
                    )
                    stop_reason = "error"
                    break
        except asyncio.CancelledError:
            stop_reason = "interrupted"
            if block:
                texts.append("".join(block))
        usage = {"inputTokens": 120, "outputTokens": 30, "cacheReadTokens": 0}
        session.input_tokens += 120
        session.output_tokens += 30
        session.messages.append(
            _message(
                "assistant",
                "\n\n".join(texts),
                stop_reason=stop_reason,
                message_id=assistant_id,
                tool_calls=calls,
            )
        )
        if stop_reason != "error":
            await self.emit(
                session,
                "message.complete",
                {
                    "messageId": assistant_id,
                    "role": "assistant",
                    "content": "\n\n".join(texts),
                    "stopReason": stop_reason,
                    "usage": usage,
                },
            )
        session.status = "idle"
        await self.emit(session, "session.idle", {"sessionId": session.id})
        session.turn = None


def _message(
    role: str,
    text: str,
    *,
    stop_reason: str | None = None,
    message_id: str | None = None,
    tool_calls: list[ToolCallOut] | None = None,
) -> MessageOut:
    return MessageOut(
        id=message_id or str(uuid.uuid4()),
        role=role,
        content=text,
        tool_calls=tool_calls or [],
        created_at=now_iso(),
        stop_reason=stop_reason,
        usage=None,
    )


class FakeSessionHandle:
    """In-memory stand-in for ``agent_tui.client.SessionHandle``."""

    def __init__(
        self, client: FakeAgentClient, session_id: str, info: SessionOut | None = None
    ) -> None:
        self.id = session_id
        self.info = info
        self._client = client

    @property
    def _state(self) -> FakeSession:
        return self._client._session(self.id)

    async def refresh(self) -> SessionOut:
        self.info = self._state.out()
        return self.info

    async def rename(self, title: str) -> SessionOut:
        self._state.title = title
        return await self.refresh()

    async def update(
        self,
        *,
        title: str | None = None,
        model: str | None = None,
        thinking: bool | None = None,
        permission_mode: str | None = None,
    ) -> SessionOut:
        session = self._state
        self._client.updates.append((self.id, title, model, thinking, permission_mode))
        session.title = title or session.title
        session.model = model or session.model
        session.thinking = session.thinking if thinking is None else thinking
        session.permission_mode = permission_mode or session.permission_mode
        if (model, thinking, permission_mode) != (None, None, None):
            await self._client.emit(
                session,
                "session.updated",
                {
                    "model": session.model,
                    "thinking": session.thinking,
                    "permissionMode": session.permission_mode,
                },
            )
        return await self.refresh()

    async def set_model(self, model: str) -> SessionOut:
        return await self.update(model=model)

    async def answer_permission(self, request_id: str, decision: str) -> PermissionOut:
        session = self._state
        request = session.pending.pop(request_id, None)
        if request is None:
            raise AgentApiError("PERMISSION_REQUEST_NOT_FOUND", "Not found", status=404)
        session.answers[request_id] = decision
        self._client.answered.append((self.id, request_id, decision))
        await self._client._wake(session)
        return PermissionOut.model_validate({**request, "decision": decision})

    async def compact(self) -> CompactionOut:
        session = self._state
        session.compactions += 1
        data = {
            "method": "summary",
            "automatic": False,
            "tokensBefore": 5000,
            "tokensAfter": 1000,
            "tokensSaved": 4000,
        }
        await self._client.emit(session, "context.compacted", data)
        return CompactionOut(
            compacted=True,
            method="summary",
            tokens_before=5000,
            tokens_after=1000,
            tokens_saved=4000,
        )

    async def list_files(self, path: str = "/") -> list[Any]:
        from backend.schemas import FileEntryOut

        files = self._client.files
        prefix = path.strip("/")
        names = sorted(
            {
                (rest.split("/")[0], "/" in rest)
                for name in files
                if (rest := name[len(prefix) + 1 :] if prefix else name)
                and (not prefix or name.startswith(prefix + "/"))
            }
        )
        return [
            FileEntryOut(name=n, path=f"{prefix}/{n}".strip("/"), is_directory=d, size=0)
            for n, d in names
        ]

    async def read_text(self, path: str) -> str:
        try:
            return self._client.files[path]
        except KeyError:
            raise AgentApiError("FILE_NOT_FOUND", "File not found", status=404) from None

    async def delete(self) -> None:
        session = self._state
        if session.turn is not None:
            session.turn.cancel()
        session.status, session.sandbox_state = "terminated", "terminated"
        await self._client.emit(session, "session.terminated", {"sessionId": session.id})

    async def pause(self) -> SessionOut:
        session = self._state
        session.status, session.sandbox_state = "paused", "paused"
        await self._client.emit(session, "session.paused", {"sessionId": session.id})
        return session.out()

    async def resume(self) -> SessionOut:
        session = self._state
        session.status, session.sandbox_state = "idle", "ready"
        await self._client.emit(session, "session.resumed", {"sessionId": session.id})
        return session.out()

    async def interrupt(self) -> None:
        session = self._state
        if session.turn is not None:
            session.turn.cancel()

    async def messages(
        self, *, limit: int | None = None, before: str | None = None
    ) -> list[MessageOut]:
        messages = list(self._state.messages)
        return messages[-limit:] if limit else messages

    async def send_message(
        self, content: str, *, on_event: Callable[[Event], Any] | None = None
    ) -> list[Event]:
        return [event async for event in self.stream_message(content)]

    async def stream_message(self, content: str) -> AsyncIterator[Event]:
        session = self._state
        if session.status in ("running", "starting") or session.turn is not None:
            raise AgentApiError(
                "SESSION_BUSY", "A turn is running", status=409, details={"status": "running"}
            )
        if session.status == "terminated":
            raise AgentApiError("SESSION_TERMINATED", "The session was deleted", status=409)
        self._client.sent.append((self.id, content))
        start = len(session.events)
        session.status = "running"
        session.turn = asyncio.get_running_loop().create_task(
            self._client.run_turn(session, content)
        )
        async for event in self.follow_events(after=start):
            yield event
            if event.type in ("session.idle", "error"):
                return

    async def follow_events(
        self,
        *,
        after: int | None = None,
        on_state: Callable[[Any], Any] | None = None,
        heartbeat_timeout: float = 30.0,
    ) -> AsyncIterator[Event]:
        client = self._client
        session = client.sessions[self.id]
        seen = len(session.events) if after is None else after
        connected = False
        try:
            while True:
                if not client.online:
                    if on_state is not None:
                        on_state(ConnectionState.RECONNECTING)
                    connected = False
                    await client._online.wait()
                if not connected:
                    connected = True
                    if on_state is not None:
                        on_state(ConnectionState.CONNECTED)
                while seen < len(session.events) and client.online:
                    event = session.events[seen]
                    seen += 1
                    yield event
                if not client.online:
                    continue
                async with session.changed:
                    if seen >= len(session.events) and client.online:
                        await session.changed.wait()
        finally:
            if on_state is not None:
                on_state(ConnectionState.CLOSED)


class FakeConnection:
    """A ``BackendConnection`` that hands the app a ``FakeAgentClient``."""

    mode = "embedded"
    label = "fake"

    def __init__(
        self,
        client: FakeAgentClient | None = None,
        *,
        needs_setup: bool = False,
        open_error: Exception | None = None,
        limitations: list[str] | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        """``gate``: ``open()`` waits for it (a backend still starting), then fails
        with ``open_error`` if there is one (once), else connects."""
        self.client = client or FakeAgentClient()
        self.gate = gate
        self.api_key: str | None = self.client.api_key
        self.needs_setup = needs_setup
        self.saved: tuple[str, str] | None = None
        self.open_error = open_error
        self.open_calls = 0
        self._limitations = limitations or []

    def needs_model_setup(self) -> bool:
        return self.needs_setup

    def save_model_setup(self, api_key: str, base_url: str) -> str:
        self.saved = (api_key, base_url)
        self.needs_setup = False
        return "/tmp/fake-config.json"

    def limitations(self) -> list[str]:
        return list(self._limitations)

    def prestart(self) -> None:
        pass

    async def open(self) -> FakeAgentClient:
        self.open_calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.open_error is not None:
            error, self.open_error = self.open_error, None
            raise error
        return self.client

    async def close(self) -> None:
        await self.client.aclose()


async def wait_until(
    pilot: Any, predicate: Callable[[], Any], seconds: float = 5.0, what: str = ""
) -> None:
    """Let the app run until ``predicate()`` is true; fail after ``seconds``.

    The app's follower worker never completes, so ``workers.wait_for_complete()``
    cannot be the synchronisation point in these tests.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what or predicate}")
        await pilot.pause(0.02)
