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
import time
from typing import Any

import anthropic
from anthropic import AsyncAnthropic

from backend.agent.compaction import (
    COMPACT_BETA,
    apply_compaction,
    compacted,
    compaction_marker,
    context_management,
    estimate_tokens,
    split_for_summary,
    summary_conversation,
)
from backend.agent.conversation import normalize_conversation, tool_result_block, user_message
from backend.agent.model_errors import MODEL_EXCEPTIONS, model_error
from backend.agent.models import ModelCatalog, ModelInfo, ModelListing
from backend.agent.reply import Reply, ReplyBuilder
from backend.agent.tools import Toolbox
from backend.agent.types import ModelError, TurnObserver, TurnResult, TurnUsage
from backend.records import ToolCall
from backend.settings import Settings
from sandbox.base import Sandbox

__all__ = ["INTERRUPTED", "UNFINISHED", "AgentLoop", "default_system_prompt"]

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


def _compaction_event(marker: dict[str, Any], *, automatic: bool) -> dict[str, Any]:
    """The ``context.compacted`` data of a compaction marker."""
    before, after = int(marker.get("tokensBefore", 0)), int(marker.get("tokensAfter", 0))
    return {
        "method": marker.get("method", "summary"),
        "automatic": automatic,
        "tokensBefore": before,
        "tokensAfter": after,
        "tokensSaved": max(0, before - after),
    }


async def _api_compacted(observer: TurnObserver, block: dict[str, Any], builder: Any) -> None:
    """The API compacted the context itself: say so (the block stays in the reply)."""
    on_compacted = getattr(observer, "on_compacted", None)
    if on_compacted is None:
        return
    usage = builder.usage
    before = (
        usage.input_tokens + usage.cache_read_tokens + usage.cache_creation_tokens if usage else 0
    )
    after = estimate_tokens(block.get("content") or "")
    marker = {"method": "api", "tokensBefore": before, "tokensAfter": after}
    await on_compacted(_compaction_event(marker, automatic=True))


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
        """What the model gets: compaction markers applied."""
        if any(m.get("role") == "compaction" for m in self.messages):
            return apply_compaction(self.base + self.messages)
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

    async def model_info(self, model_id: str) -> ModelInfo:
        """What the catalog knows of ``model_id`` (extended thinking, window)."""
        return await self.models.info(model_id)

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
        base = normalize_conversation(apply_compaction([*history, user_message(user_content)]))
        turn = _Turn(base)
        if not self._has_credentials():
            # The SDK would raise a bare TypeError at request time; say what to fix instead.
            raise ModelError(
                "MODEL_AUTH_ERROR",
                "No Anthropic API key is configured; set ANTHROPIC_API_KEY.",
                partial=turn.snapshot("error"),
            )
        return await self._run_interruptible(
            turn,
            system_prompt=system_prompt,
            model=model,
            sandbox=sandbox,
            observer=observer,
            thinking=thinking,
        )

    async def _run_interruptible(
        self,
        turn: _Turn,
        *,
        system_prompt: str | None,
        model: str | None,
        sandbox: Sandbox,
        observer: TurnObserver,
        thinking: bool,
    ) -> TurnResult:
        """Run the turn's rounds with the model's request options; an interrupt
        (cancellation) answers the open tool round and ends the turn ``interrupted``."""
        try:
            model = model or self.settings.anthropic_model
            info = await self.models.info(model)
            extra = self._thinking_params(info) if thinking else {}
            if info.compaction:
                extra["betas"] = [COMPACT_BETA]
                extra["context_management"] = context_management(self._threshold(info))
            return await self._run(
                turn,
                system=system_prompt or default_system_prompt(),
                model=model,
                sandbox=sandbox,
                observer=observer,
                extra=extra,
                info=info,
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

    def _threshold(self, info: ModelInfo) -> int:
        """Input tokens past which the context is compacted."""
        return int(info.context_window * self.settings.compaction_threshold)

    def _thinking_params(self, info: ModelInfo) -> dict[str, Any]:
        """The request parameters that turn on extended thinking for the model
        (none when the models list says it has no thinking)."""
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
        info: ModelInfo,
    ) -> TurnResult:
        limit = self.settings.max_tool_rounds
        rounds = 0
        if turn.round:
            # A resumed turn: the last round's calls that have no result run first.
            pending = [c for c in turn.round if c.result is None]
            await self._run_tools(turn, pending, sandbox=sandbox, observer=observer)
            rounds += 1
        while True:
            if not info.compaction:
                await self._compact_if_needed(turn, system=system, info=info, observer=observer)
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

            await self._run_tools(turn, calls, sandbox=sandbox, observer=observer)
            rounds += 1

    async def _run_tools(
        self, turn: _Turn, calls: list[ToolCall], *, sandbox: Sandbox, observer: TurnObserver
    ) -> None:
        """Run ``calls`` (of ``turn.round``) one by one, then answer the round."""
        for call in calls:
            turn.announced.add(call.id)
            await observer.on_tool_call(call)
            refusal = await _permission(observer, call)
            if refusal is not None:
                call.result, call.is_error = refusal, True
            else:
                outcome = await self.toolbox.run(
                    call.name, call.arguments, sandbox, on_output=_output_callback(observer, call)
                )
                call.result, call.is_error = outcome.content, outcome.is_error
            await observer.on_tool_result(call)
            if len(turn.round) > 1:
                # Each result stored as it comes: a restart re-runs only what had none.
                await observer.on_step(turn.snapshot("tool_use"))
        turn.close_round()
        await observer.on_step(turn.snapshot("tool_use"))

    async def resume_turn(
        self,
        *,
        history: list[dict[str, Any]],
        partial: TurnResult,
        system_prompt: str | None,
        model: str,
        sandbox: Sandbox,
        observer: TurnObserver,
        thinking: bool = False,
    ) -> TurnResult:
        """Continue a turn cut while its last round of tool calls ran (a server
        restart while a call waited for permission): ``history`` ends with the
        turn's user message, ``partial`` is the turn as stored. Calls whose result
        says they never finished run now (asking permission again, which finds
        the stored answer), then the turn goes on as ``run_turn`` would."""
        turn = _Turn(normalize_conversation(apply_compaction(history)))
        messages = list(partial.model_messages)
        # Cut by a crash (UNFINISHED) or by the shutdown's cancellation (INTERRUPTED).
        unfinished = {c.id for c in partial.tool_calls if c.result in (UNFINISHED, INTERRUPTED)}
        if messages and messages[-1]["role"] == "user":
            messages.pop()  # the stored answers of the cut round; re-made below
        last = messages[-1] if messages else None
        round_ids = [
            b["id"]
            for b in (last or {}).get("content", [])
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        if last is None or last["role"] != "assistant" or not round_ids:
            raise ValueError("the stored turn does not end with a round of tool calls")
        turn.messages = messages
        turn.texts = [partial.text] if partial.text else []
        turn.tool_calls = [dataclasses.replace(c) for c in partial.tool_calls]
        by_id = {c.id: c for c in turn.tool_calls}
        for call_id in round_ids:
            call = by_id.get(call_id)
            if call is None:
                block = next(b for b in last["content"] if b.get("id") == call_id)
                call = ToolCall(id=call_id, name=block["name"], arguments=block.get("input") or {})
                turn.tool_calls.append(call)
                by_id[call_id] = call
            if call.id in unfinished or call.result is None:
                call.result, call.is_error = None, False
            else:
                turn.announced.add(call.id)
        turn.round = [by_id[i] for i in round_ids]
        return await self._run_interruptible(
            turn,
            system_prompt=system_prompt,
            model=model,
            sandbox=sandbox,
            observer=observer,
            thinking=thinking,
        )

    # ---- compaction (see backend/agent/compaction.py)

    def _fixed_tokens(self, system: str) -> int:
        return estimate_tokens(system) + estimate_tokens(self.toolbox.definitions())

    async def _compact_if_needed(
        self, turn: _Turn, *, system: str, info: ModelInfo, observer: TurnObserver
    ) -> None:
        """Summarise the older conversation when the next call would pass the threshold."""
        conversation = turn.conversation()
        size = estimate_tokens(conversation) + self._fixed_tokens(system)
        if size <= self._threshold(info):
            return
        try:
            marker = await self._summarise(conversation, system=system, model=info.id, before=size)
        except MODEL_EXCEPTIONS as exc:
            # The call itself may still fit; if not, its own error tells the user.
            log.warning("compaction failed: %s", exc)
            return
        if marker is None:
            return
        turn.messages.append(marker)
        on_compacted = getattr(observer, "on_compacted", None)
        if on_compacted is not None:
            await on_compacted(_compaction_event(marker, automatic=True))

    async def _summarise(
        self,
        conversation: list[dict[str, Any]],
        *,
        system: str,
        model: str,
        before: int,
        keep_tail: bool = True,
    ) -> dict[str, Any] | None:
        """A compaction marker replacing ``conversation``, or None when there is
        nothing to summarise. ``keep_tail``: the last user message (and the call it
        answers) stays as it is, as a turn in progress needs. Raises the SDK's errors."""
        head, tail = split_for_summary(conversation) if keep_tail else (conversation, [])
        if not keep_tail and len(head) < 2:
            return None
        if not head:
            return None
        assert self.client is not None
        response = await self.client.messages.create(
            model=model,
            max_tokens=min(self.settings.anthropic_max_tokens, 4096),
            system=[{"type": "text", "text": system, "cache_control": _EPHEMERAL}],
            tools=self.toolbox.definitions(),  # type: ignore[arg-type]
            messages=summary_conversation(head),  # type: ignore[arg-type]
        )
        summary = "\n".join(
            b.text for b in response.content if getattr(b, "type", "") == "text"
        ).strip()
        if not summary:
            return None
        messages = compacted(summary, tail)
        after = estimate_tokens(messages) + self._fixed_tokens(system)
        return compaction_marker(
            messages,
            method="summary",
            tokensBefore=before,
            tokensAfter=after,
            at=time.time(),
        )

    async def compact(
        self, *, history: list[dict[str, Any]], system_prompt: str | None, model: str
    ) -> dict[str, Any] | None:
        """Compact a session's history now (between turns): the marker to store
        after it, or None when there is too little to compact. Raises ``ModelError``."""
        if not self._has_credentials():
            raise ModelError(
                "MODEL_AUTH_ERROR", "No Anthropic API key is configured; set ANTHROPIC_API_KEY."
            )
        conversation = normalize_conversation(apply_compaction(history))
        system = system_prompt or default_system_prompt()
        before = estimate_tokens(conversation) + self._fixed_tokens(system)
        try:
            # Between turns everything is summarised; the next user message follows it.
            return await self._summarise(
                conversation,
                system=system,
                model=model or self.settings.anthropic_model,
                before=before,
                keep_tail=False,
            )
        except MODEL_EXCEPTIONS as exc:
            raise model_error(exc, api_key=self.settings.anthropic_api_key) from exc

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
        # API compaction is a beta of the Messages API: the same call on the beta resource.
        create = (
            self.client.beta.messages.create if "betas" in params else self.client.messages.create
        )
        try:
            stream = await create(  # type: ignore[operator]
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
                    elif done.get("type") == "compaction":
                        await _api_compacted(observer, done, builder)
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
