"""The agent loop's boundary with the session actor.

The actor calls ``AgentLoop.run_turn`` (``backend/agent/loop.py``) and hears
about the turn through a ``TurnObserver``; the loop never touches the store or
the event stream itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.records import ToolCall


@dataclass
class TurnUsage:
    """Tokens of one turn, summed over its model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def add(self, other: TurnUsage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_creation_tokens += other.cache_creation_tokens

    def to_json(self) -> dict[str, int]:
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "cacheReadTokens": self.cache_read_tokens,
        }


@dataclass
class TurnResult:
    """How a turn ended.

    ``stop_reason`` is the model's last stop reason (``end_turn``, ``max_tokens``,
    ``refusal``, ...), ``"interrupted"`` when the turn was cancelled, or
    ``"max_tool_rounds"`` when the loop hit its bound. ``model_messages`` are the
    exact assistant and tool_result messages the turn appended to the
    conversation, always left valid for the next call (every tool_use answered).
    """

    stop_reason: str
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: TurnUsage = field(default_factory=TurnUsage)
    model_messages: list[dict[str, Any]] = field(default_factory=list)


class ModelError(Exception):
    """The model API failed after the SDK's retries; the turn ends with an ``error`` event.

    ``code`` is one of MODEL_RATE_LIMITED, MODEL_OVERLOADED, MODEL_UNAVAILABLE,
    MODEL_AUTH_ERROR, MODEL_BAD_REQUEST, MODEL_ERROR. ``partial`` holds what the
    turn produced before failing (its ``model_messages`` are valid).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        partial: TurnResult | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.partial = partial


class TurnObserver(Protocol):
    """What the actor hears during a turn, in order."""

    async def on_text_delta(self, text: str) -> None:
        """A fragment of assistant text."""
        ...

    async def on_text_done(self, text: str) -> None:
        """One text block is complete; ``text`` is its whole text."""
        ...

    async def on_tool_call(self, call: ToolCall) -> None:
        """The model asked for a tool; it is about to run."""
        ...

    async def on_tool_result(self, call: ToolCall) -> None:
        """The tool finished; ``call.result`` and ``call.is_error`` are set."""
        ...

    async def on_step(self, result: TurnResult) -> None:
        """A model call or a tool round finished: ``result`` is the turn so far
        (valid ``model_messages``); persist it so a restart loses nothing."""
        ...

    # Optional (the loop checks with getattr): extended thinking, live tool
    # output, context compaction and permission requests.
    #   async def on_thinking_delta(self, text: str) -> None
    #   async def on_thinking_done(self, text: str) -> None
    #   async def on_tool_output(self, call: ToolCall, stream: str, text: str) -> None
    #   async def on_compacted(self, info: dict[str, Any]) -> None
    #   async def check_permission(self, call: ToolCall) -> str | None
    #       (None: the call may run; else the tool error the model gets instead)
