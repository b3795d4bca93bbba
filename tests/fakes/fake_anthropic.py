"""A fake Anthropic Messages API that speaks the real streaming wire format.

It serves ``POST /v1/messages`` on a real loopback port (uvicorn in a background
thread), so the real ``anthropic`` SDK talks to it over HTTP exactly as it talks
to the service: every SSE frame carries its ``event:`` line, tool input arrives
as ``input_json_delta`` fragments split at arbitrary points, errors before the
stream are JSON bodies with 429 / 529 / ... and ``retry-after-ms`` /
``x-should-retry`` headers, and a mid-stream ``event: error`` replaces the rest
of a stream.

Replies are scripted per test::

    with FakeAnthropic() as fake:          # or: async with FakeAnthropic() as fake
        fake.enqueue(
            reply().text("Let me look.").tool_use("shell", {"command": "ls"}),
            reply().http_error(529),
            reply().text("Done.").stop("end_turn"),
        )
        client = AsyncAnthropic(api_key="test", base_url=fake.url)
        ...
        fake.bodies[1]["messages"][-1]     # what the client sent

When the queue is empty the fake answers with its ``default`` responder
(``echo_reply`` unless told otherwise). Every request is validated like the
real API validates a conversation (role alternation, tool_use/tool_result
pairing, non-empty content, at most four cache breakpoints); an invalid one gets
a 400 ``invalid_request_error`` and does not consume a scripted reply.

From the command line, for manual ``curl`` tests and benchmarks::

    python -m tests.fakes.fake_anthropic --port 8765                 # echo; "run: CMD" runs CMD
    python -m tests.fakes.fake_anthropic --port 8765 --script bench --deltas 2000
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = [
    "DEFAULT_MODELS",
    "FakeAnthropic",
    "InvalidRequest",
    "RecordedRequest",
    "Reply",
    "bench_reply",
    "compaction_stream",
    "echo_reply",
    "fake_model",
    "is_summary_request",
    "models_page",
    "reply",
    "summary_reply",
    "thinking_signature",
    "validate_request",
    "validate_thinking",
]

# A responder builds the reply for a request body when no scripted reply is queued.
Responder = Callable[[dict[str, Any]], "Reply"]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {
    "overloaded_error": "Overloaded",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "authentication_error": "invalid x-api-key",
    "invalid_request_error": "Invalid request",
}
# Varying fragment sizes so tool input JSON is cut inside keys, strings and numbers.
_FRAGMENT_SIZES = (3, 7, 2, 11, 5)
_PING_SECONDS = 0.2


class _DropConnection(Exception):
    """Raised inside the ASGI app to make uvicorn cut the connection mid-stream."""


class _QuietDrop(logging.Filter):
    """Keep the deliberate connection drops out of uvicorn's error log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrop())


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


@dataclass
class Reply:
    """One scripted model reply (or failure), built with chainable methods.

    Content is streamed in order: ``text`` blocks as ``text_delta``s,
    ``tool_use`` blocks as ``input_json_delta`` fragments (the first one ``""``).
    The stop reason defaults to ``tool_use`` when the reply has a tool_use block,
    else ``end_turn``. ``after_deltas`` counts ``content_block_delta`` frames over
    the whole reply; a trigger past the last delta fires just before
    ``message_delta``.
    """

    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    delay_seconds: float = 0.0
    first_byte_delay_seconds: float = 0.0
    http: dict[str, Any] | None = None
    stream_error_type: str | None = None
    stream_error_message: str = ""
    stream_error_after: int = 0
    hang_after: int | None = None
    disconnect_after: int | None = None
    usage_values: dict[str, int] = field(default_factory=dict)

    def text(self, text: str, *, chunks: list[str] | None = None) -> Reply:
        """A text block, streamed word by word (or as the given ``chunks``)."""
        deltas = chunks if chunks is not None else (re.findall(r"\S+\s*|\s+", text) or [""])
        self.blocks.append({"type": "text", "deltas": list(deltas)})
        return self

    def tool_use(
        self,
        name: str,
        input: dict[str, Any],
        *,
        id: str | None = None,
        fragments: list[str] | None = None,
    ) -> Reply:
        """A tool_use block whose input JSON arrives in fragments split at arbitrary points."""
        if fragments is None:
            raw = json.dumps(input)
            fragments, pos, i = [""], 0, 0
            while pos < len(raw):
                size = _FRAGMENT_SIZES[i % len(_FRAGMENT_SIZES)]
                fragments.append(raw[pos : pos + size])
                pos, i = pos + size, i + 1
        self.blocks.append(
            {
                "type": "tool_use",
                "id": id or _new_id("toolu_"),
                "name": name,
                "fragments": fragments,
            }
        )
        return self

    def thinking(self, text: str, *, signature: str | None = None) -> Reply:
        """A thinking block: ``thinking_delta``s word by word, then one ``signature_delta``
        (by default ``thinking_signature(text)``, which validation checks on the way back)."""
        deltas = re.findall(r"\S+\s*|\s+", text) or [""]
        self.blocks.append(
            {
                "type": "thinking",
                "deltas": deltas,
                "signature": signature if signature is not None else thinking_signature(text),
            }
        )
        return self

    def compaction(self, summary: str) -> Reply:
        """A ``compaction`` block (API compaction, beta ``compact_20260112``): the
        API's summary of older context, which the client must send back verbatim."""
        self.blocks.append(
            {"type": "compaction", "deltas": [summary], "encrypted": "enc_" + _new_id("")}
        )
        return self

    def stop(self, reason: str = "end_turn") -> Reply:
        """Set the stop reason sent in ``message_delta``."""
        self.stop_reason = reason
        return self

    def delay(self, seconds: float, *, first_byte: float = 0.0) -> Reply:
        """Wait ``seconds`` before each delta (and ``first_byte`` before the headers)."""
        self.delay_seconds = seconds
        self.first_byte_delay_seconds = first_byte
        return self

    def usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read: int | None = None,
        cache_creation: int | None = None,
    ) -> Reply:
        """Override the token counts reported in ``message_start`` / ``message_delta``."""
        for key, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cache_read_input_tokens", cache_read),
            ("cache_creation_input_tokens", cache_creation),
        ):
            if value is not None:
                self.usage_values[key] = value
        return self

    def http_error(
        self,
        status: int,
        *,
        type: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        retry_after_ms: int | None = 10,
        should_retry: bool | None = None,
    ) -> Reply:
        """Answer with an HTTP error before any stream.

        ``retry_after_ms`` defaults to 10 so the SDK's retries stay fast in tests;
        pass None to let the SDK use its own backoff.
        """
        error_type = type or ERROR_TYPES.get(status, "api_error")
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        if should_retry is not None:
            headers["x-should-retry"] = "true" if should_retry else "false"
        self.http = {
            "status": status,
            "type": error_type,
            "message": message or ERROR_MESSAGES.get(error_type, f"Error {status}"),
            "headers": headers,
        }
        return self

    def stream_error(
        self, type: str = "overloaded_error", *, after_deltas: int = 0, message: str | None = None
    ) -> Reply:
        """Send ``event: error`` after ``after_deltas`` deltas and end the stream there."""
        self.stream_error_type = type
        self.stream_error_message = message or ERROR_MESSAGES.get(type, type)
        self.stream_error_after = after_deltas
        return self

    def hang(self, *, after_deltas: int | None = None) -> Reply:
        """Stop sending content after ``after_deltas`` deltas (default: all of them)
        and keep the stream open with pings until the client goes away."""
        self.hang_after = after_deltas if after_deltas is not None else 1 << 30
        return self

    def disconnect(self, *, after_deltas: int = 0) -> Reply:
        """Cut the connection abruptly after ``after_deltas`` deltas."""
        self.disconnect_after = after_deltas
        return self

    @property
    def resolved_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if any(b["type"] == "tool_use" for b in self.blocks) else "end_turn"


def reply() -> Reply:
    """Start building a scripted reply: ``reply().text("hi").stop("end_turn")``."""
    return Reply()


# -- default responders ---------------------------------------------------------------------


def _last_user_parts(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The last user message's text and its tool_result blocks."""
    messages = body.get("messages") or []
    if not messages or messages[-1].get("role") != "user":
        return "", []
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content, []
    texts = [b.get("text", "") for b in content if b.get("type") == "text"]
    results = [b for b in content if b.get("type") == "tool_result"]
    return "\n".join(texts), results


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if b.get("type") == "text")
    return str(content or "")


def echo_reply(body: dict[str, Any]) -> Reply:
    """The default behaviour, handy for manual tests of the whole app.

    ``run: <command>`` asks for the ``shell`` tool (``bash`` when the caller
    offers that instead, as OpenCode does); a tool_result is summarised; anything
    else is echoed back.
    """
    text, results = _last_user_parts(body)
    if results:
        summary = "\n\n".join(_result_text(r) for r in results)
        return reply().text(f"The tool returned:\n{summary}").stop("end_turn")
    if text.strip().startswith("run:"):
        command = text.strip()[len("run:") :].strip()
        offered = {t.get("name") for t in body.get("tools") or []}
        if "shell" not in offered and "bash" in offered:
            return (
                reply()
                .text("Running it.")
                .tool_use("bash", {"command": command, "description": "run the command"})
            )
        return reply().text("Running it.").tool_use("shell", {"command": command})
    return reply().text(f"You said: {text}").stop("end_turn")


def bench_reply(deltas: int, *, piece: str = "lorem ", delay: float = 0.0) -> Responder:
    """A responder that streams ``deltas`` text deltas as fast as it can (for benchmarks)."""

    def respond(body: dict[str, Any]) -> Reply:
        return reply().text("", chunks=[piece] * deltas).delay(delay).stop("end_turn")

    return respond


# -- request validation ---------------------------------------------------------------------


class InvalidRequest(Exception):
    """What the real API would answer with a 400 ``invalid_request_error``."""


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise InvalidRequest(f"{where}: text content blocks must be non-empty")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise InvalidRequest(f"{where}.content: Input should be a valid list")
    return content


def validate_request(body: dict[str, Any]) -> None:
    """Raise ``InvalidRequest`` with an API-like message for what the real API would refuse.

    Stricter than the service in one way: consecutive messages of one role are
    refused (the API merges them), so tests catch a loop that produces them.
    """
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise InvalidRequest("max_tokens: Field required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: at least one message is required")
    breakpoints = 1 if body.get("cache_control") else 0

    system = body.get("system")
    if isinstance(system, list):
        for block in system:
            if block.get("type") != "text" or not block.get("text"):
                raise InvalidRequest("system: text content blocks must be non-empty")
            breakpoints += 1 if block.get("cache_control") else 0

    names: set[str] = set()
    for i, tool in enumerate(body.get("tools") or []):
        if "type" in tool and tool["type"] not in ("custom",):
            continue  # server tools have their own shapes
        if not tool.get("name") or tool["name"] in names:
            raise InvalidRequest(f"tools.{i}.name: tool names must be unique and non-empty")
        names.add(tool["name"])
        if (tool.get("input_schema") or {}).get("type") != "object":
            raise InvalidRequest(f"tools.{i}.input_schema.type: Input should be 'object'")
        breakpoints += 1 if tool.get("cache_control") else 0

    expected_role = "user"
    pending_tool_uses: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if role != expected_role:
            if i == 0:
                raise InvalidRequest("messages: first message must use the user role")
            raise InvalidRequest(
                f"messages: roles must alternate between user and assistant (messages.{i})"
            )
        blocks = _blocks(message.get("content"), f"messages.{i}")
        if not blocks:
            raise InvalidRequest(f"messages.{i}: all messages must have non-empty content")
        seen_other = False
        answered: set[str] = set()
        tool_uses: set[str] = set()
        for j, block in enumerate(blocks):
            where = f"messages.{i}.content.{j}"
            kind = block.get("type")
            breakpoints += 1 if block.get("cache_control") else 0
            if kind == "text":
                if not block.get("text"):
                    raise InvalidRequest(f"{where}: text content blocks must be non-empty")
                seen_other = True
            elif kind == "tool_result":
                if role != "user":
                    raise InvalidRequest(
                        f"{where}: tool_result blocks are only allowed in user messages"
                    )
                if seen_other:
                    raise InvalidRequest(
                        f"{where}: tool_result blocks must come first in the content, before any text"
                    )
                tool_use_id = block.get("tool_use_id")
                if tool_use_id not in pending_tool_uses or tool_use_id in answered:
                    raise InvalidRequest(
                        f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{tool_use_id}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
                answered.add(tool_use_id)
            elif kind == "tool_use":
                if role != "assistant":
                    raise InvalidRequest(
                        f"{where}: tool_use blocks are only allowed in assistant messages"
                    )
                if not isinstance(block.get("input"), dict) or not block.get("id"):
                    raise InvalidRequest(f"{where}.input: Input should be a valid dictionary")
                if block["id"] in tool_uses:
                    raise InvalidRequest(f"{where}: `tool_use` ids must be unique")
                tool_uses.add(block["id"])
                seen_other = True
            else:
                seen_other = True
        if pending_tool_uses - answered:
            raise InvalidRequest(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(sorted(pending_tool_uses - answered))}. Each "
                "`tool_use` block must have a corresponding `tool_result` block in the next message."
            )
        pending_tool_uses = tool_uses
        expected_role = "assistant" if role == "user" else "user"
    if pending_tool_uses:
        raise InvalidRequest(
            "messages: the final assistant message has `tool_use` blocks without `tool_result` blocks"
        )
    if breakpoints > 4:
        raise InvalidRequest(
            f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        )
    validate_thinking(body)


# -- extended thinking ------------------------------------------------------------------------


def thinking_signature(text: str) -> str:
    """The fake's signature of a thinking block: it proves the block came back unchanged."""
    return "sig_" + hashlib.sha256(text.encode()).hexdigest()[:40]


def compaction_stream(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``content_block_start`` block and the delta of a scripted compaction block."""
    delta = {
        "type": "compaction_delta",
        "content": "".join(block["deltas"]),
        "encrypted_content": block["encrypted"],
    }
    return {"type": "compaction", "content": None}, [delta]


def thinking_stream(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``content_block_start`` block and the deltas of a scripted thinking block."""
    deltas: list[dict[str, Any]] = [
        {"type": "thinking_delta", "thinking": t} for t in block["deltas"]
    ]
    deltas.append({"type": "signature_delta", "signature": block["signature"]})
    return {"type": "thinking", "thinking": "", "signature": ""}, deltas


def with_thinking(script: Reply, body: dict[str, Any]) -> Reply:
    """A default responder's reply, led by a short thinking block when the request
    turned thinking on (scripted replies are left as the test wrote them)."""
    if (body.get("thinking") or {}).get("type") not in ("enabled", "adaptive"):
        return script
    if script.http is not None or any(b["type"] == "thinking" for b in script.blocks):
        return script
    text, results = _last_user_parts(body)
    about = f"{len(results)} tool result(s)" if results else f"a message of {len(text)} characters"
    thought = Reply().thinking(f"The user sent {about}. I will answer briefly.")
    script.blocks.insert(0, thought.blocks[0])
    return script


def validate_thinking(body: dict[str, Any]) -> None:
    """What the API checks about thinking: each thinking block comes back with its
    signature unchanged; with thinking on, ``budget_tokens`` is at least 1024 and
    below ``max_tokens``, and an assistant message that a tool_result answers (the
    tool loop in progress) starts with its thinking block."""
    for i, message in enumerate(body.get("messages") or []):
        if message.get("role") != "assistant" or not isinstance(message.get("content"), list):
            continue
        for j, block in enumerate(message["content"]):
            if block.get("type") == "thinking" and block.get("signature") != thinking_signature(
                block.get("thinking", "")
            ):
                raise InvalidRequest(
                    f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                )
    config = body.get("thinking") or {}
    if config.get("type") != "enabled":
        return
    budget = config.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        raise InvalidRequest("thinking.enabled.budget_tokens: Input should be >= 1024")
    if budget >= body.get("max_tokens", 0):
        raise InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
    messages = body.get("messages") or []
    last = messages[-1] if messages else {}
    content = last.get("content") if isinstance(last.get("content"), list) else []
    if len(messages) >= 2 and any(b.get("type") == "tool_result" for b in content):
        assistant = messages[-2]
        blocks = assistant.get("content") if isinstance(assistant.get("content"), list) else []
        if not blocks or blocks[0].get("type") not in ("thinking", "redacted_thinking"):
            found = blocks[0].get("type") if blocks else "nothing"
            raise InvalidRequest(
                f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or "
                f"`redacted_thinking`, but found `{found}`. When `thinking` is enabled, a final "
                "`assistant` message must start with a thinking block."
            )


# -- compaction -----------------------------------------------------------------------------

SUMMARY_MARKER = "Summarise the conversation so far"


def is_summary_request(body: dict[str, Any]) -> bool:
    """A summarising call of the agent's own compaction (not a streamed turn)."""
    text, _ = _last_user_parts(body)
    return SUMMARY_MARKER in text and not body.get("stream")


def summary_reply(body: dict[str, Any]) -> Reply:
    """A short, deterministic summary of a conversation: its user messages, shortened,
    and how many tool results it held."""
    lines, results = [], 0
    for message in (body.get("messages") or [])[:-1]:
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        for block in blocks:
            if block.get("type") == "tool_result":
                results += 1
            elif message.get("role") == "user" and block.get("type") == "text":
                lines.append("- " + block["text"][:80].replace("\n", " "))
    text = "Summary. The user asked:\n" + "\n".join(lines[-20:])
    text += f"\n({results} tool results seen.)"
    return reply().text(text).stop("end_turn")


# -- the models route -------------------------------------------------------------------------


def fake_model(
    id: str,
    *,
    display_name: str | None = None,
    context_window: int = 200_000,
    thinking: bool = True,
    compaction: bool = False,
) -> dict[str, Any]:
    """One ``ModelInfo`` as ``GET /v1/models`` returns it (capabilities included)."""
    no = {"supported": False}
    yes = {"supported": True}
    return {
        "type": "model",
        "id": id,
        "display_name": display_name or id,
        "created_at": "2026-01-01T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": context_window,
        "max_tokens": 64_000,
        "capabilities": {
            "batch": yes,
            "citations": yes,
            "code_execution": no,
            "context_management": {
                "supported": compaction,
                "compact_20260112": yes if compaction else no,
            },
            "effort": {"supported": False},
            "image_input": yes,
            "pdf_input": yes,
            "server_tools": {"supported": False},
            "structured_outputs": yes,
            "thinking": {
                "supported": thinking,
                "types": {
                    "adaptive": no,
                    "between_tools": no,
                    "disabled": yes,
                    "enabled": yes if thinking else no,
                },
            },
        },
    }


DEFAULT_MODELS = (
    fake_model("claude-sonnet-4-6", display_name="Claude Sonnet 4.6"),
    fake_model("claude-haiku-4-5", display_name="Claude Haiku 4.5", thinking=False),
)


def models_page(models: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """A page of ``GET /v1/models`` (``limit`` and ``after_id`` honoured)."""
    limit = int(query.get("limit") or 20)
    start = 0
    if query.get("after_id"):
        ids = [m["id"] for m in models]
        start = ids.index(query["after_id"]) + 1 if query["after_id"] in ids else len(ids)
    page = models[start : start + limit]
    return {
        "data": page,
        "has_more": start + limit < len(models),
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


# -- the server -----------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request the fake received (valid or not) and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int = 200


def _frame(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class FakeAnthropic:
    """A scripted fake of ``POST /v1/messages`` on a real loopback port.

    Start it with ``with FakeAnthropic() as fake`` / ``async with ...`` (a uvicorn
    server in a background thread, so it serves sync tests, async tests and a
    client blocked in another loop alike), or ``start()`` / ``stop()``.
    ``api_key``, when set, is the only key accepted (others get a 401).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        default: Responder = echo_reply,
        model: str = "claude-sonnet-4-6",
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.default = default
        self.model = model
        self._initial_default, self._initial_api_key = default, api_key
        # GET /v1/models serves these; None makes the route answer 404 (an endpoint
        # without a models route).
        self.models: list[dict[str, Any]] | None = list(DEFAULT_MODELS)
        # Answer the agent's summarising calls (compaction) without using the queue.
        self.auto_summaries = True
        self.requests: list[RecordedRequest] = []
        self._queue: deque[Reply | Responder] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- scripting and inspection

    def reset(self) -> None:
        """Forget scripted replies and recorded requests, and restore the defaults
        (for a server shared between tests)."""
        with self._lock:
            self._queue.clear()
        self.requests.clear()
        self.default = self._initial_default
        self.api_key = self._initial_api_key
        self.models = list(DEFAULT_MODELS)

    def enqueue(self, *replies: Reply | Responder) -> None:
        """Queue replies, answered in order, one per valid request."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are still queued."""
        with self._lock:
            return len(self._queue)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """The ``POST /v1/messages`` requests only (not ``GET /v1/models``)."""
        return [r for r in self.requests if r.path == "/v1/messages"]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of every ``/v1/messages`` request received, in order."""
        return [r.body for r in self.requests if r.path == "/v1/messages"]

    @property
    def url(self) -> str:
        """The base URL to give ``AsyncAnthropic(base_url=...)``."""
        return f"http://{self.host}:{self.port}"

    # -- lifecycle

    def start(self) -> FakeAnthropic:
        """Bind the port and serve from a daemon thread; returns once it accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._closing.clear()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-anthropic", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake Anthropic server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """End hanging streams and stop the server thread."""
        self._closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeAnthropic:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # -- ASGI

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The ASGI application (usable with any ASGI server)."""
        if scope["type"] != "http":
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        record = RecordedRequest(scope["method"], scope["path"], headers, body)
        self.requests.append(record)

        if scope["path"] == "/v1/models" and scope["method"] == "GET" and self.models is not None:
            query = dict(
                pair.split("=", 1)
                for pair in scope["query_string"].decode().split("&")
                if "=" in pair
            )
            await self._send_json(send, 200, models_page(self.models, query))
            return
        if scope["path"] != "/v1/messages" or scope["method"] != "POST":
            record.status = 404
            await self._send_error(send, 404, "not_found_error", f"Not found: {scope['path']}")
            return
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if not key or (self.api_key is not None and key != self.api_key):
            record.status = 401
            await self._send_error(send, 401, "authentication_error", "invalid x-api-key")
            return
        try:
            validate_request(body)
        except InvalidRequest as exc:
            record.status = 400
            await self._send_error(send, 400, "invalid_request_error", str(exc))
            return

        if self.auto_summaries and is_summary_request(body):
            # The agent's own compaction: answered here, the scripted queue is left alone.
            scripted: Reply | Responder = summary_reply(body)
        else:
            with self._lock:
                scripted = self._queue.popleft() if self._queue else self.default
        script = scripted if isinstance(scripted, Reply) else with_thinking(scripted(body), body)

        # Delays and hangs end as soon as the client goes away (an interrupt), so a
        # test's teardown never waits for a stream nobody reads.
        gone = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch_disconnect())
        try:
            if script.first_byte_delay_seconds:
                await self._pause(script.first_byte_delay_seconds, gone)
                if gone.is_set():
                    return
            if script.http is not None:
                record.status = script.http["status"]
                await self._send_error(
                    send,
                    script.http["status"],
                    script.http["type"],
                    script.http["message"],
                    script.http["headers"],
                )
            elif body.get("stream"):
                await self._stream(script, body, raw, send, gone)
            else:
                await self._send_json(send, 200, self._message(script, body, raw))
        finally:
            watcher.cancel()

    async def _pause(self, seconds: float, gone: asyncio.Event) -> None:
        """Sleep ``seconds``, or less if the client leaves or the server stops."""
        deadline = time.monotonic() + seconds
        while not gone.is_set() and not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(gone.wait(), min(left, _PING_SECONDS))
            except TimeoutError:
                pass

    async def _send_json(
        self, send: Any, status: int, data: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(data).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"request-id", _new_id("req_").encode()),
            (b"content-length", str(len(payload)).encode()),
        ]
        headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _send_error(
        self,
        send: Any,
        status: int,
        error_type: str,
        message: str,
        extra: dict[str, str] | None = None,
    ) -> None:
        body = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": _new_id("req_"),
        }
        await self._send_json(send, status, body, extra)

    def _usage(self, script: Reply, raw: bytes) -> dict[str, int]:
        deltas = sum(len(b.get("deltas") or b.get("fragments") or []) for b in script.blocks)
        usage = {
            "input_tokens": max(1, len(raw) // 4),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": deltas + 1,
        }
        usage.update(script.usage_values)
        return usage

    def _message(self, script: Reply, body: dict[str, Any], raw: bytes) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        for block in script.blocks:
            if block["type"] == "text":
                content.append({"type": "text", "text": "".join(block["deltas"])})
            elif block["type"] == "thinking":
                content.append(
                    {
                        "type": "thinking",
                        "thinking": "".join(block["deltas"]),
                        "signature": block["signature"],
                    }
                )
            else:
                content.append(
                    {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": json.loads("".join(block["fragments"]) or "{}"),
                    }
                )
        return {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or self.model,
            "content": content,
            "stop_reason": script.resolved_stop_reason,
            "stop_sequence": None,
            "usage": self._usage(script, raw),
        }

    async def _stream(
        self, script: Reply, body: dict[str, Any], raw: bytes, send: Any, gone: asyncio.Event
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"request-id", _new_id("req_").encode()),
                ],
            }
        )
        await self._stream_frames(script, body, raw, send, gone)
        await send({"type": "http.response.body", "body": b""})

    async def _stream_frames(
        self, script: Reply, body: dict[str, Any], raw: bytes, send: Any, gone: asyncio.Event
    ) -> None:
        usage = self._usage(script, raw)
        sent_deltas = 0

        async def emit(name: str, data: dict[str, Any]) -> None:
            await send(
                {"type": "http.response.body", "body": _frame(name, data), "more_body": True}
            )

        async def checkpoint() -> bool:
            """Fire the triggers due at this delta count; False ends the stream."""
            if script.disconnect_after is not None and sent_deltas >= script.disconnect_after:
                raise _DropConnection
            if script.stream_error_type is not None and sent_deltas >= script.stream_error_after:
                await emit(
                    "error",
                    {
                        "type": "error",
                        "error": {
                            "type": script.stream_error_type,
                            "message": script.stream_error_message,
                        },
                    },
                )
                return False
            if script.hang_after is not None and sent_deltas >= script.hang_after:
                while not gone.is_set() and not self._closing.is_set():
                    await emit("ping", {"type": "ping"})
                    await self._pause(_PING_SECONDS, gone)
                return False
            return not gone.is_set() and not self._closing.is_set()

        start_usage = dict(usage, output_tokens=1)
        await emit(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": _new_id("msg_"),
                    "type": "message",
                    "role": "assistant",
                    "model": body.get("model") or self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
        )
        for index, block in enumerate(script.blocks):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": t} for t in block["deltas"]]
            elif block["type"] == "thinking":
                start, deltas = thinking_stream(block)
            elif block["type"] == "compaction":
                start, deltas = compaction_stream(block)
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": f} for f in block["fragments"]
                ]
            await emit(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            if index == 0:
                await emit("ping", {"type": "ping"})
            for delta in deltas:
                if not await checkpoint():
                    return
                if script.delay_seconds:
                    await self._pause(script.delay_seconds, gone)
                    if gone.is_set():
                        return
                await emit(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
                sent_deltas += 1
            await emit("content_block_stop", {"type": "content_block_stop", "index": index})
        if not await checkpoint():
            return
        await emit(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": script.resolved_stop_reason, "stop_sequence": None},
                "usage": usage,
            },
        )
        await emit("message_stop", {"type": "message_stop"})


def main(argv: list[str] | None = None) -> None:
    """Serve the fake from the command line (for curl, the app and benchmarks)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--script",
        choices=("echo", "bench"),
        default="echo",
        help="echo: echo the user (run: <cmd> asks for the shell tool); bench: stream --deltas deltas",
    )
    parser.add_argument("--deltas", type=int, default=1000, help="text deltas per bench reply")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between bench deltas")
    parser.add_argument("--api-key", default=None, help="accept only this key")
    args = parser.parse_args(argv)
    default = bench_reply(args.deltas, delay=args.delay) if args.script == "bench" else echo_reply
    fake = FakeAnthropic(host=args.host, port=args.port, api_key=args.api_key, default=default)
    print(f"fake Anthropic API on {fake.url} (script: {args.script})", flush=True)
    uvicorn.run(
        fake.app,
        host=args.host,
        port=args.port,
        interface="asgi3",
        lifespan="off",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
