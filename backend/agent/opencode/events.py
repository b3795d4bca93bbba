"""OpenCode's events mapped onto a turn observer (``backend.agent.types``).

Per OpenCode session, a turn sees:

- ``message.updated`` with ``info.role``: which message ids are the assistant's
  (the prompt's own text part arrives as a part too and must not be echoed);
- ``message.part.updated`` / ``message.part.delta`` for ``text`` parts: deltas
  go to ``on_text_delta``, a part whose ``time.end`` is set to ``on_text_done``;
  ``reasoning`` parts (extended thinking) likewise to ``on_thinking_delta`` /
  ``on_thinking_done``;
- ``message.part.updated`` for ``tool`` parts: ``state.status`` ``running`` (or
  a first sight already finished) -> ``on_tool_call``, ``completed`` /
  ``error`` -> ``on_tool_result``;
- ``step-finish`` parts carry the step's tokens (summed into the turn's usage);
- ``permission.asked`` (for the session or a subagent's child session, known
  from ``session.created``): kept in ``permission_requests`` for the engine,
  which answers them;
- ``session.error`` ends the turn with a ``ModelError`` (unless it is the abort
  the user asked for); ``session.idle`` ends it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from backend.agent.types import ModelError, TurnObserver, TurnResult, TurnUsage
from backend.records import ToolCall

__all__ = ["TurnMapper"]

log = logging.getLogger(__name__)


@dataclass
class _TextPart:
    text: str = ""
    done: bool = False
    thinking: bool = False  # a reasoning part
    signature: str = ""


@dataclass
class TurnMapper:
    """Follows one turn of one OpenCode session; feed it every event."""

    session_id: str
    observer: TurnObserver
    assistant_ids: set[str] = field(default_factory=set)
    texts: dict[str, _TextPart] = field(default_factory=dict)
    text_order: list[str] = field(default_factory=list)
    # ("text" | "thinking", part id) and ("tool", call id) in the order they first appeared
    order: list[tuple[str, str]] = field(default_factory=list)
    tools: dict[str, ToolCall] = field(default_factory=dict)
    finished_tools: set[str] = field(default_factory=set)
    usage: TurnUsage = field(default_factory=TurnUsage)
    # ``permission.asked`` properties not yet answered, in order
    permission_requests: list[dict[str, Any]] = field(default_factory=list)
    # Subagents' sessions (``task`` tool): their permission requests are this turn's too.
    child_sessions: set[str] = field(default_factory=set)
    aborted: bool = False
    started: bool = False

    async def handle(self, event: dict[str, Any]) -> bool:
        """Apply one event; True when the turn is over (the session went idle)."""
        kind = event.get("type")
        props = event.get("properties") or {}
        if kind in ("session.created", "session.updated"):
            info = props.get("info") or {}
            parent = info.get("parentID")
            if parent and (parent == self.session_id or parent in self.child_sessions):
                self.child_sessions.add(str(info.get("id")))
            return False
        if kind == "permission.asked":
            if props.get("id") and (
                props.get("sessionID") == self.session_id
                or props.get("sessionID") in self.child_sessions
            ):
                self.permission_requests.append(props)
            return False
        if props.get("sessionID", (props.get("info") or {}).get("sessionID")) != self.session_id:
            return False
        if kind == "message.updated":
            info = props.get("info") or {}
            if info.get("role") == "assistant":
                self.assistant_ids.add(info.get("id", ""))
        elif kind == "message.part.delta":
            await self._delta(props)
        elif kind == "message.part.updated":
            await self._part(props.get("part") or {})
        elif kind == "session.status":
            if (props.get("status") or {}).get("type") == "busy":
                self.started = True
        elif kind == "session.idle":
            return self.started or bool(self.assistant_ids)
        elif kind == "session.error":
            self._error(props.get("error") or {})
        return False

    async def _delta(self, props: dict[str, Any]) -> None:
        part_id = props.get("partID")
        if props.get("field") != "text" or part_id not in self.texts:
            return
        if props.get("messageID") not in self.assistant_ids:
            return
        text = str(props.get("delta") or "")
        if text:
            state = self.texts[part_id]
            state.text += text
            await self._on_delta(state, text)

    async def _on_delta(self, state: _TextPart, text: str) -> None:
        if not state.thinking:
            await self.observer.on_text_delta(text)
        elif (on_thinking := getattr(self.observer, "on_thinking_delta", None)) is not None:
            await on_thinking(text)

    async def _on_done(self, state: _TextPart) -> None:
        if not state.thinking:
            await self.observer.on_text_done(state.text)
        elif (on_thinking_done := getattr(self.observer, "on_thinking_done", None)) is not None:
            await on_thinking_done(state.text)

    async def _part(self, part: dict[str, Any]) -> None:
        kind = part.get("type")
        if part.get("messageID") not in self.assistant_ids:
            return
        if kind in ("text", "reasoning"):
            await self._text(part)
        elif kind == "tool":
            await self._tool(part)
        elif kind == "step-finish":
            tokens = part.get("tokens") or {}
            cache = tokens.get("cache") or {}
            self.usage.add(
                TurnUsage(
                    input_tokens=int(tokens.get("input") or 0),
                    output_tokens=int(tokens.get("output") or 0),
                    cache_read_tokens=int(cache.get("read") or 0),
                    cache_creation_tokens=int(cache.get("write") or 0),
                )
            )

    async def _text(self, part: dict[str, Any]) -> None:
        part_id = str(part.get("id"))
        state = self.texts.get(part_id)
        if state is None:
            thinking = part.get("type") == "reasoning"
            state = self.texts[part_id] = _TextPart(thinking=thinking)
            if not thinking:
                self.text_order.append(part_id)
            self.order.append(("thinking" if thinking else "text", part_id))
        full = str(part.get("text") or "")
        if full.startswith(state.text) and len(full) > len(state.text):
            # A part updated without deltas (or ahead of them): send what is new.
            extra = full[len(state.text) :]
            state.text = full
            await self._on_delta(state, extra)
        if state.thinking:
            signature = ((part.get("metadata") or {}).get("anthropic") or {}).get("signature")
            state.signature = str(signature or state.signature)
        if (part.get("time") or {}).get("end") and not state.done:
            state.done = True
            state.text = full or state.text
            if state.text:
                await self._on_done(state)

    async def _tool(self, part: dict[str, Any]) -> None:
        call_id = str(part.get("callID") or part.get("id"))
        state = part.get("state") or {}
        status = state.get("status")
        call = self.tools.get(call_id)
        if call is None and status in ("running", "completed", "error"):
            arguments = state.get("input")
            call = ToolCall(
                id=call_id,
                name=str(part.get("tool") or "tool"),
                arguments=arguments if isinstance(arguments, dict) else {"input": arguments},
            )
            self.tools[call_id] = call
            self.order.append(("tool", call_id))
            await self.observer.on_tool_call(call)
        if (
            call is not None
            and status in ("completed", "error")
            and call_id not in self.finished_tools
        ):
            self.finished_tools.add(call_id)
            if status == "completed":
                output = state.get("output")
                call.result = output if isinstance(output, str) else json.dumps(output)
            else:
                call.result = str(state.get("error") or "The tool failed")
                call.is_error = True
            await self.observer.on_tool_result(call)

    def _error(self, error: dict[str, Any]) -> None:
        name = str(error.get("name") or "")
        data = error.get("data") or {}
        message = str(data.get("message") or name or "OpenCode reported an error")
        if self.aborted or name == "MessageAbortedError":
            return
        code = "MODEL_ERROR"
        status = data.get("statusCode")
        if status == 401:
            code = "MODEL_AUTH_ERROR"
        elif status == 429:
            code = "MODEL_RATE_LIMITED"
        elif status == 529:
            code = "MODEL_OVERLOADED"
        raise ModelError(
            code,
            message,
            details={"engine": "opencode", "error": name},
            partial=self.result("error"),
        )

    @property
    def text(self) -> str:
        return "\n\n".join(self.texts[p].text for p in self.text_order if self.texts[p].text)

    def model_messages(self) -> list[dict[str, Any]]:
        """The turn as Anthropic messages, in order: assistant text and tool_use
        blocks, each round's tool_results in a user message after it. Always a
        valid conversation (an unfinished tool is answered as such)."""
        messages: list[dict[str, Any]] = []
        blocks: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []

        def flush() -> None:
            if blocks:
                messages.append({"role": "assistant", "content": list(blocks)})
            if results:
                messages.append({"role": "user", "content": list(results)})
            blocks.clear()
            results.clear()

        for kind, key in self.order:
            if kind in ("text", "thinking"):
                part = self.texts[key]
                if not part.text:
                    continue
                if results:
                    flush()
                if part.thinking:
                    blocks.append(
                        {"type": "thinking", "thinking": part.text, "signature": part.signature}
                    )
                else:
                    blocks.append({"type": "text", "text": part.text})
            else:
                call = self.tools[key]
                blocks.append(
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                )
                results.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": call.id,
                        "content": call.result
                        if call.result is not None
                        else "The turn stopped before this tool finished.",
                        "is_error": call.is_error or call.result is None,
                    }
                )
        flush()
        return messages

    def result(self, stop_reason: str) -> TurnResult:
        """The turn so far, shaped like the built-in loop's result."""
        text = self.text
        messages = self.model_messages()
        return TurnResult(
            stop_reason=stop_reason,
            text=text,
            tool_calls=list(self.tools.values()),
            usage=self.usage,
            model_messages=messages,
        )
