"""HTTP shapes of the contract (request bodies and responses), camelCase on the wire.

Imported by the server (validation, OpenAPI) and by the Python client (parsing),
so there is one definition of each.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from backend.agent.conversation import ordered_blocks
from backend.records import ApiKey, MessageRecord, SessionRecord

REPO_PATTERN = re.compile(r"^(?:[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|https://[^\s]+)$")


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 UTC with a ``Z``, millisecond precision."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Wire(BaseModel):
    """Base of every wire model: camelCase aliases, snake_case attributes."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


class StrictBody(Wire):
    """A request body: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# ---- errors


class ErrorDetail(Wire):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(Wire):
    error: ErrorDetail


# ---- health


class Health(Wire):
    status: str
    version: str
    timestamp: str


class Readiness(Health):
    """``/health/ready``: each dependency the replica needs, ``"ok"`` when it answered."""

    checks: dict[str, str] = Field(
        description='"database" always, "redis" with REDIS_URL set: "ok", "unreachable" or "timeout"'
    )


# ---- keys


class KeyCreate(StrictBody):
    name: str = Field(min_length=1, max_length=200)
    environment: Literal["live", "test"] = "live"
    scopes: list[Literal["sessions", "admin"]] = Field(
        default_factory=lambda: ["sessions"], min_length=1
    )
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _aware_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value <= datetime.now(UTC):
            raise ValueError("expiresAt must be in the future")
        return value


class KeyOut(Wire):
    id: str
    user_id: str
    name: str
    prefix: str
    last4: str
    environment: str
    scopes: list[str]
    created_at: str
    last_used_at: str | None
    expires_at: str | None
    revoked_at: str | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            user_id=key.user_id,
            name=key.name,
            prefix=key.prefix,
            last4=key.last4,
            environment=key.environment,
            scopes=key.scopes,
            created_at=iso(key.created_at) or "",
            last_used_at=iso(key.last_used_at),
            expires_at=iso(key.expires_at),
            revoked_at=iso(key.revoked_at),
        )


class KeyCreated(KeyOut):
    key: str  # the full key, shown this once


class KeyList(Wire):
    keys: list[KeyOut]


# ---- sessions


class SessionCreate(StrictBody):
    repo: str | None = Field(
        default=None,
        max_length=500,
        pattern=REPO_PATTERN.pattern,
        description="`owner/repo` (GitHub) or an https git URL",
    )
    git_token: str | None = Field(default=None, max_length=1000)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    title: str | None = Field(default=None, max_length=200)
    engine: Literal["builtin", "opencode"] | None = Field(
        default=None,
        description="Who runs the turns: `builtin` (this server's agent loop) or `opencode` "
        "(OpenCode inside the sandbox); default: the server's `AGENT_ENGINE`",
    )


PERMISSION_MODES = ("auto", "ask", "read-only")
PermissionMode = Literal["auto", "ask", "read-only"]


class SessionPatch(StrictBody):
    """Change some of a session's settings; fields left out stay as they are.
    ``model``, ``thinking`` and ``permissionMode`` apply from the next model call."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    thinking: bool | None = Field(
        default=None, description="Extended thinking, when the model supports it"
    )
    permission_mode: PermissionMode | None = Field(
        default=None,
        description="`auto` runs every tool; `ask` waits for approval of shell, write and "
        "edit; `read-only` refuses them",
    )

    def changes(self) -> dict[str, Any]:
        """The fields given, by attribute name."""
        return self.model_dump(exclude_none=True)


class SandboxInfo(Wire):
    provider: str
    state: str
    id: str | None


class SessionUsage(Wire):
    input_tokens: int
    output_tokens: int
    sandbox_seconds: float
    messages: int


class PermissionOut(Wire):
    """A tool call waiting for the user's approval (permission mode ``ask``)."""

    request_id: str
    message_id: str
    tool_id: str
    tool: str
    input: dict[str, Any]
    created_at: str
    decision: Literal["allow", "deny", "always"] | None = None


class PermissionAnswer(StrictBody):
    decision: Literal["allow", "deny", "always"] = Field(
        description="`always` allows this tool for the rest of the session"
    )


class SessionOut(Wire):
    id: str
    status: str
    title: str | None
    repo: str | None
    model: str
    created_at: str
    last_activity_at: str
    sandbox: SandboxInfo
    usage: SessionUsage
    error: dict[str, Any] | None = None
    last_event_id: int = 0
    thinking: bool = False
    permission_mode: str = "auto"
    pending_permissions: list[PermissionOut] | None = Field(
        default=None, description="Requests waiting for an answer (on GET of one session)"
    )
    pending_permission_count: int = 0
    engine: str = "builtin"

    @classmethod
    def of(
        cls,
        s: SessionRecord,
        *,
        pending: list[dict[str, Any]] | None = None,
        pending_count: int | None = None,
    ) -> SessionOut:
        return cls(
            id=s.id,
            status=s.status,
            title=s.title,
            repo=s.repo,
            model=s.model,
            created_at=iso(s.created_at) or "",
            last_activity_at=iso(s.last_activity_at) or "",
            sandbox=SandboxInfo(
                provider=s.sandbox_provider, state=s.sandbox_state, id=s.sandbox_id
            ),
            usage=SessionUsage(
                input_tokens=s.input_tokens,
                output_tokens=s.output_tokens,
                sandbox_seconds=round(s.sandbox_seconds, 3),
                messages=s.message_count,
            ),
            error=s.error,
            last_event_id=s.last_seq,
            thinking=bool(s.options.get("thinking", False)),
            permission_mode=str(s.options.get("permissionMode", "auto")),
            pending_permissions=None
            if pending is None
            else [PermissionOut.model_validate(p) for p in pending],
            pending_permission_count=pending_count
            if pending_count is not None
            else len(pending or ()),
            engine=s.engine,
        )


class SessionList(Wire):
    sessions: list[SessionOut]
    next_cursor: str | None


class SessionStatus(Wire):
    id: str
    status: str


class MessageSend(StrictBody):
    content: str = Field(min_length=1, max_length=100_000)


class ToolCallOut(Wire):
    id: str
    name: str
    arguments: dict[str, Any]
    result: str | None
    is_error: bool


class TextBlockOut(Wire):
    """A text block of a message."""

    type: Literal["text"] = "text"
    text: str


class ToolUseBlockOut(ToolCallOut):
    """A tool call of a message, where the model made it, with its result once known."""

    type: Literal["tool_use"] = "tool_use"


class ThinkingBlockOut(Wire):
    """The model's extended thinking (its signature stays on the server)."""

    type: Literal["thinking"] = "thinking"
    text: str


class CompactionBlockOut(Wire):
    """Where the model's context was compacted: the model sees a summary of what
    came before from here on."""

    type: Literal["compaction"] = "compaction"
    method: str
    tokens_before: int
    tokens_after: int


MessageBlockOut = Annotated[
    TextBlockOut | ToolUseBlockOut | ThinkingBlockOut | CompactionBlockOut,
    Field(discriminator="type"),
]
AnyBlockOut = TextBlockOut | ToolUseBlockOut | ThinkingBlockOut | CompactionBlockOut


class MessageOut(Wire):
    """A message of the conversation. ``content`` (all text, joined) and ``toolCalls``
    are the contract's fields; ``blocks`` (an extension) holds the same text and
    tool calls interleaved in the order they were produced, as a client should
    show them."""

    id: str
    role: str
    content: str
    tool_calls: list[ToolCallOut]
    created_at: str
    stop_reason: str | None
    usage: dict[str, int] | None
    blocks: list[MessageBlockOut] = Field(
        default_factory=list,
        description="Text and tool calls in the order they happened: `text` blocks "
        "(`text`), `tool_use` blocks (the fields of a tool call), `thinking` blocks "
        "(`text`) and `compaction` marks (`method`, `tokensBefore`, `tokensAfter`). "
        "Extension of the contract; older servers omit it.",
    )

    @classmethod
    def of(cls, m: MessageRecord) -> MessageOut:
        calls = [
            ToolCallOut(
                id=t.id, name=t.name, arguments=t.arguments, result=t.result, is_error=t.is_error
            )
            for t in m.tool_calls
        ]
        return cls(
            id=m.id,
            role=m.role,
            content=m.content,
            tool_calls=calls,
            created_at=iso(m.created_at) or "",
            stop_reason=m.stop_reason,
            usage=m.usage,
            blocks=_blocks_of(m, calls),
        )


def _blocks_of(m: MessageRecord, calls: list[ToolCallOut]) -> list[AnyBlockOut]:
    """``m``'s blocks from its stored model messages (the exact order), else from its
    text and tool calls (records written before model messages were kept)."""
    by_id = {c.id: c for c in calls}
    blocks: list[AnyBlockOut] = []
    for raw in ordered_blocks(m.model_messages, m.role):
        if raw["type"] == "text":
            blocks.append(TextBlockOut(text=raw["text"]))
            continue
        if raw["type"] == "thinking":
            blocks.append(ThinkingBlockOut(text=raw["text"]))
            continue
        if raw["type"] == "compaction":
            blocks.append(CompactionBlockOut.model_validate(raw))
            continue
        # The tool call record is kept up to date as results arrive; prefer it.
        known = by_id.get(raw["id"])
        source = known.model_dump() if known is not None else raw
        blocks.append(ToolUseBlockOut(**{k: source[k] for k in ToolCallOut.model_fields}))
    if any(isinstance(b, TextBlockOut | ToolUseBlockOut) for b in blocks) or not (
        m.content or calls
    ):
        return blocks
    fallback: list[AnyBlockOut] = []
    if m.content:
        fallback.append(TextBlockOut(text=m.content))
    fallback += [ToolUseBlockOut(**c.model_dump()) for c in calls]
    return fallback


class MessageList(Wire):
    messages: list[MessageOut]
    has_more: bool


class FileEntryOut(Wire):
    name: str
    path: str
    is_directory: bool
    size: int


class FileList(Wire):
    files: list[FileEntryOut]


class LogList(Wire):
    logs: list[str]


class CompactionOut(Wire):
    """What ``POST /v1/sessions/{id}/compact`` did (also the ``context.compacted`` data)."""

    compacted: bool
    method: Literal["summary", "api"] | None = None
    tokens_before: int = 0
    tokens_after: int = 0
    tokens_saved: int = 0


# ---- models


class ModelOut(Wire):
    id: str
    display_name: str
    context_window: int
    max_output_tokens: int | None = None
    thinking: bool = Field(description="Supports extended thinking")
    compaction: bool = Field(description="Supports API-side context compaction")


class ModelList(Wire):
    models: list[ModelOut]
    default: str = Field(description="The model a new session gets")
    source: Literal["endpoint", "configured"] = Field(
        description="`endpoint`: listed by the model API; `configured`: ANTHROPIC_MODELS "
        "(the endpoint has no models route or could not be reached)"
    )


# ---- usage


class UsageDay(Wire):
    date: str
    event_type: str
    quantity: float


class UsageOut(Wire):
    by_type: dict[str, float]
    by_day: list[UsageDay]
