"""The agent loop: stream the model's reply, run the tools it asks for, repeat.

One ``AgentLoop`` serves every session; ``run_turn`` runs one user turn against
one session's sandbox and reports progress to a ``TurnObserver``. The turn's
state is kept so that it can be cut at any ``await`` (an interrupt, a model API
error) and still leave a conversation the API accepts: every ``tool_use`` is
answered by a ``tool_result``, no message or text block is empty.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import anthropic
from anthropic import AsyncAnthropic

from backend.agent.conversation import normalize_conversation, tool_result_block, user_message
from backend.agent.model_errors import MODEL_EXCEPTIONS, model_error
from backend.agent.models import ModelCatalog, ModelListing
from backend.agent.reply import Reply, ReplyBuilder
from backend.agent.tools import Toolbox
from backend.agent.types import ModelError, TurnObserver, TurnResult, TurnUsage
from backend.records import ToolCall
from backend.settings import Settings
from sandbox.base import Sandbox

__all__ = ["INTERRUPTED", "AgentLoop", "default_system_prompt"]

log = logging.getLogger(__name__)

INTERRUPTED = "Interrupted by the user"
# What a step snapshot says for a tool still running: if the server dies now,
# this is what the stored conversation keeps.
UNFINISHED = "The turn stopped before this tool finished."
_EPHEMERAL = {"type": "ephemeral"}


def default_system_prompt() -> str:
    """The system prompt used when a session does not set its own."""
    return (
        "You are a coding agent working in a sandboxed workspace: a directory holding the "
        "user's project (often a clone of a git repository), on a Linux machine you control "
        "through tools.\n\n"
        "Tools:\n"
        "- shell: run a bash command in the workspace root (build, test, git, install "
        "packages). Each call is a fresh non-interactive shell with a time limit.\n"
        "- read_file, write_file, edit_file: read, create or change files. edit_file replaces "
        "an exact, unique string.\n"
        "- list_files: list a directory. search: find a regular expression in files.\n"
        "Paths are relative to the workspace root; absolute paths and '..' are refused.\n\n"
        "How to work: look before you change anything (list, search, read); make focused "
        "edits; run the project's tests or the program to check your work; when a command "
        "fails, read the error and adapt rather than repeating it. Explain briefly what you "
        "are doing, and end with a short summary of what changed and anything left to do. "
        "Ask the user when a request is ambiguous or a step is destructive."
    )


def _output_callback(observer: TurnObserver, call: ToolCall) -> Any:
    """The sandbox's output callback for ``call``, if the observer wants live output."""
    on_tool_output = getattr(observer, "on_tool_output", None)
    if on_tool_output is None:
        return None

    async def on_output(stream: str, text: str) -> None:
        await on_tool_output(call, stream, text)

    return on_output


async def _permission(observer: TurnObserver, call: ToolCall) -> str | None:
    """None when ``call`` may run; else the tool error the model gets instead."""
    check = getattr(observer, "check_permission", None)
    return None if check is None else await check(call)


class _Turn:
    """One turn's state, consistent at every ``await`` so it can be cut anywhere."""

    def __init__(self, base: list[dict[str, Any]]) -> None:
        self.base = base  # the conversation before this turn's replies (ends with the user message)
        self.messages: list[dict[str, Any]] = []  # what this turn appended
        self.texts: list[str] = []
        self.tool_calls: list[ToolCall] = []
        self.usage = TurnUsage()
        # The reply being streamed: its finished blocks, the text block still open.
        self.stream_blocks: list[dict[str, Any]] = []
        self.builder: ReplyBuilder | None = None
        # The calls of the last assistant message while they run, and which the
        # observer has heard about.
        self.round: list[ToolCall] = []
        self.announced: set[str] = set()

    @property
    def open_text(self) -> str | None:
        """The text of the block still streaming (shown to the user already)."""
        return self.builder.open_text() if self.builder is not None else None

    @property
    def stream_usage(self) -> TurnUsage | None:
        """Usage of the reply still streaming, as far as it is known."""
        return self.builder.usage if self.builder is not None else None

    def conversation(self) -> list[dict[str, Any]]:
        return self.base + self.messages

    def commit_assistant(self, content: list[dict[str, Any]]) -> None:
        content = [b for b in content if not (b.get("type") == "text" and not b.get("text"))]
        if not content:
            return  # an empty assistant message would be refused on the next call
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            # The continuation of a pause_turn: the API treats it as one message.
            self.messages[-1] = {"role": "assistant", "content": last["content"] + content}
        else:
            self.messages.append({"role": "assistant", "content": content})

    def finish_stream(self, content: list[dict[str, Any]], usage: TurnUsage) -> None:
        self.commit_assistant(content)
        self.usage.add(usage)
        self.stream_blocks, self.builder = [], None

    async def abandon_stream(self, observer: TurnObserver) -> None:
        """Keep what the user already saw of a reply cut short: its text only (a
        half-streamed or never-run tool_use is dropped)."""
        open_text = self.open_text
        blocks = [b for b in self.stream_blocks if b.get("type") == "text"]
        usage = self.stream_usage or TurnUsage()
        if open_text:
            blocks.append({"type": "text", "text": open_text})
            self.texts.append(open_text)
        self.finish_stream(blocks, usage)
        if open_text:
            await observer.on_text_done(open_text)

    def close_round(self) -> None:
        """Append the user message answering the round's calls."""
        if self.round:
            results = [tool_result_block(c.id, c.result or "", c.is_error) for c in self.round]
            self.messages.append({"role": "user", "content": results})
        self.round = []

    async def answer_round(self, text: str, observer: TurnObserver) -> None:
        """Answer the calls of the round that have no result with ``text`` (an error)."""
        unanswered = [c for c in self.round if c.result is None]
        for call in unanswered:
            call.result, call.is_error = text, True
        unannounced = {c.id for c in unanswered} - self.announced
        self.announced |= unannounced
        self.close_round()
        for call in unanswered:
            if call.id in unannounced:
                await observer.on_tool_call(call)
            await observer.on_tool_result(call)

    def snapshot(self, stop_reason: str) -> TurnResult:
        """The turn so far, independent of later changes, with a valid conversation."""
        messages = list(self.messages)
        calls = [dataclasses.replace(c) for c in self.tool_calls]
        for call in calls:
            if call.result is None:
                call.result, call.is_error = UNFINISHED, True
        if self.round:
            by_id = {c.id: c for c in calls}
            results = [
                tool_result_block(c.id, by_id[c.id].result or "", by_id[c.id].is_error)
                for c in self.round
            ]
            messages.append({"role": "user", "content": results})
        usage = dataclasses.replace(self.usage)
        if self.stream_usage is not None:
            usage.add(self.stream_usage)
        texts = self.texts + ([self.open_text] if self.open_text else [])
        return TurnResult(
            stop_reason=stop_reason,
            text="\n\n".join(texts),
            tool_calls=calls,
            usage=usage,
            model_messages=messages,
        )


class AgentLoop:
    """Runs turns: the model's streamed replies and the tool calls they ask for.

    Prompt caching: the system prompt and the tool list each carry a cache
    breakpoint, and the top-level ``cache_control`` lets the API cache the
    conversation up to its last block, so each call of a turn (and the next
    turn) reads the previous prefix from the cache.
    """

    def __init__(self, settings: Settings, client: AsyncAnthropic | None = None) -> None:
        self.settings = settings
        self._owns_client = client is None
        self.toolbox = Toolbox(settings)
        if client is None:
            try:
                # With no key in the settings the SDK falls back to its own credential
                # sources (ANTHROPIC_AUTH_TOKEN, profiles on disk).
                client = AsyncAnthropic(
                    api_key=settings.anthropic_api_key or None,
                    base_url=settings.anthropic_base_url or None,
                    max_retries=2,
                )
            except anthropic.AnthropicError:
                # A named profile that cannot be read: the server must still start;
                # each turn then fails with MODEL_AUTH_ERROR.
                log.warning("no usable Anthropic credentials", exc_info=True)
        self.client: AsyncAnthropic | None = client
        self.models = ModelCatalog(settings, client if self._has_credentials() else None)

    async def list_models(self) -> ModelListing:
        """The models the endpoint offers (cached), or the configured list."""
        return await self.models.listing()

    async def aclose(self) -> None:
        """Close the HTTP client, if this loop created it."""
        if self._owns_client and self.client is not None:
            await self.client.close()

    async def run_turn(
        self,
        *,
        history: list[dict[str, Any]],
        user_content: str,
        system_prompt: str | None,
        model: str,
        sandbox: Sandbox,
        observer: TurnObserver,
        thinking: bool = False,
    ) -> TurnResult:
        """Run one turn: ``user_content`` after ``history`` (the stored model messages).

        ``thinking`` asks for extended thinking when the model supports it; the
        thinking blocks stream to ``observer.on_thinking_delta`` / ``on_thinking_done``
        and stay in ``model_messages`` with their signatures (the API wants them
        back unchanged while a tool loop runs).

        Returns how the turn ended; ``model_messages`` holds what the turn added
        after the user message. ``system_prompt`` None (or empty) means
        ``default_system_prompt()``. A history left invalid by an earlier failure
        (a trailing user message, a tool_use without result) is repaired in what
        is sent, not in what the caller stores.

        Raises ``ModelError`` when the model API fails after the SDK's retries;
        its ``partial`` is the turn so far (``on_step`` is not called for it).

        Interrupts: cancelling the task that runs this coroutine stops the model
        stream or the running tool (the sandbox kills its processes), answers
        every open tool_use with "Interrupted by the user", calls ``on_step`` with
        that result and *returns* it with stop_reason ``"interrupted"``. That one
        cancellation is swallowed (and ``uncancel``-ed) so the caller can finish
        the turn cleanly; a second one while the loop winds down propagates.
        """
        base = normalize_conversation([*history, user_message(user_content)])
        turn = _Turn(base)
        if not self._has_credentials():
            # The SDK would raise a bare TypeError at request time; say what to fix instead.
            raise ModelError(
                "MODEL_AUTH_ERROR",
                "No Anthropic API key is configured; set ANTHROPIC_API_KEY.",
                partial=turn.snapshot("error"),
            )
        try:
            model = model or self.settings.anthropic_model
            return await self._run(
                turn,
                system=system_prompt or default_system_prompt(),
                model=model,
                sandbox=sandbox,
                observer=observer,
                extra=await self._thinking_params(model) if thinking else {},
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await turn.abandon_stream(observer)
            await turn.answer_round(INTERRUPTED, observer)
            result = turn.snapshot("interrupted")
            await observer.on_step(result)
            return result

    async def _thinking_params(self, model: str) -> dict[str, Any]:
        """The request parameters that turn on extended thinking for ``model``
        (none when the models list says it has no thinking)."""
        info = await self.models.info(model)
        if info.thinking == "adaptive":
            return {"thinking": {"type": "adaptive"}}
        if info.thinking is None:
            return {}
        budget = self.settings.thinking_budget_tokens
        # max_tokens must exceed the thinking budget.
        return {
            "thinking": {"type": "enabled", "budget_tokens": budget},
            "max_tokens": max(self.settings.anthropic_max_tokens, budget + 1024),
        }

    def _has_credentials(self) -> bool:
        client = self.client
        if client is None:
            return False
        return any(getattr(client, name, None) for name in ("api_key", "auth_token", "credentials"))

    async def _run(
        self,
        turn: _Turn,
        *,
        system: str,
        model: str,
        sandbox: Sandbox,
        observer: TurnObserver,
        extra: dict[str, Any],
    ) -> TurnResult:
        limit = self.settings.max_tool_rounds
        rounds = 0
        while True:
            reply = await self._call_model(
                turn, system=system, model=model, observer=observer, extra=extra
            )
            stop = reply.stop_reason or "end_turn"
            turn.finish_stream(reply.content, reply.usage)
            calls = [
                ToolCall(id=b["id"], name=b["name"], arguments=b.get("input") or {})
                for b in reply.content
                if b.get("type") == "tool_use"
            ]
            turn.tool_calls.extend(calls)
            turn.round = calls
            await observer.on_step(turn.snapshot(stop))

            if stop == "pause_turn" and not calls:
                # The API paused a long turn; sending the reply back resumes it.
                rounds += 1
                if rounds > limit:
                    return turn.snapshot("max_tool_rounds")
                continue
            if not calls:
                return turn.snapshot(stop)
            if stop != "tool_use":
                # Cut off (max_tokens, ...) while writing a call: it must not run.
                await turn.answer_round(
                    f"Not run: the reply ended ({stop}) before this call was complete.", observer
                )
                result = turn.snapshot(stop)
                await observer.on_step(result)
                return result
            if rounds >= limit:
                await turn.answer_round(
                    f"Not run: the turn reached its limit of {limit} tool rounds.", observer
                )
                result = turn.snapshot("max_tool_rounds")
                await observer.on_step(result)
                return result

            for call in calls:
                turn.announced.add(call.id)
                await observer.on_tool_call(call)
                refusal = await _permission(observer, call)
                if refusal is not None:
                    call.result, call.is_error = refusal, True
                else:
                    outcome = await self.toolbox.run(
                        call.name,
                        call.arguments,
                        sandbox,
                        on_output=_output_callback(observer, call),
                    )
                    call.result, call.is_error = outcome.content, outcome.is_error
                await observer.on_tool_result(call)
            turn.close_round()
            rounds += 1
            await observer.on_step(turn.snapshot("tool_use"))

    async def _call_model(
        self,
        turn: _Turn,
        *,
        system: str,
        model: str,
        observer: TurnObserver,
        extra: dict[str, Any] | None = None,
    ) -> Reply:
        """Stream one reply from the raw events, reporting text as it arrives."""
        assert self.client is not None  # run_turn checked
        params: dict[str, Any] = {"max_tokens": self.settings.anthropic_max_tokens, **(extra or {})}
        on_thinking = getattr(observer, "on_thinking_delta", None)
        on_thinking_done = getattr(observer, "on_thinking_done", None)
        try:
            stream = await self.client.messages.create(
                model=model,
                system=[{"type": "text", "text": system, "cache_control": _EPHEMERAL}],
                tools=self.toolbox.definitions(),  # type: ignore[arg-type]
                messages=turn.conversation(),  # type: ignore[arg-type]
                cache_control=_EPHEMERAL,  # type: ignore[arg-type]
                stream=True,
                **params,
            )
        except MODEL_EXCEPTIONS as exc:
            raise await self._failure(turn, exc, observer) from exc
        builder = ReplyBuilder()
        turn.builder = builder
        try:
            while True:
                # Only the SDK's calls and the parsing are guarded: an observer's
                # exception is not a model error.
                try:
                    event = await anext(stream)
                    kind = event.type
                    text = builder.delta(event) if kind == "content_block_delta" else None
                    done = builder.close_block(event) if kind == "content_block_stop" else None
                except StopAsyncIteration:
                    break
                except MODEL_EXCEPTIONS as exc:
                    raise await self._failure(turn, exc, observer) from exc
                if kind == "content_block_delta":
                    if text:
                        await observer.on_text_delta(text)
                    elif on_thinking is not None and event.delta.type == "thinking_delta":
                        await on_thinking(event.delta.thinking)
                elif kind == "message_start":
                    builder.start(event)
                elif kind == "content_block_start":
                    builder.open_block(event)
                elif kind == "content_block_stop" and done is not None:
                    turn.stream_blocks.append(done)
                    if done.get("type") == "text" and done.get("text"):
                        turn.texts.append(done["text"])
                        await observer.on_text_done(done["text"])
                    elif done.get("type") == "thinking" and on_thinking_done is not None:
                        await on_thinking_done(done.get("thinking", ""))
                elif kind == "message_delta":
                    builder.message_delta(event)
        finally:
            await stream.close()
        reply = builder.reply()
        if not builder.started or reply.stop_reason is None:
            error = ModelError(
                "MODEL_UNAVAILABLE",
                "The model API's reply ended before it was complete.",
                details={"requestId": getattr(stream, "request_id", None)},
            )
            await turn.abandon_stream(observer)
            error.partial = turn.snapshot("error")
            raise error
        return reply

    async def _failure(self, turn: _Turn, exc: BaseException, observer: TurnObserver) -> ModelError:
        await turn.abandon_stream(observer)
        error = model_error(
            exc, api_key=self.settings.anthropic_api_key, partial=turn.snapshot("error")
        )
        log.warning("model call failed: %s %s", error.code, error.message)
        return error
