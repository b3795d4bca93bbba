"""Keeping the model conversation valid for the Messages API.

The API refuses a conversation whose roles do not alternate cleanly, whose
``tool_use`` blocks lack a ``tool_result`` in the next message, whose
``tool_result`` blocks answer nothing, or whose messages or text blocks are
empty. A turn that failed before the model answered, or a server that stopped
mid-tool, can leave such a history behind; ``normalize_conversation`` repairs
it the same way every time, so the prefix sent to the model (and its prompt
cache) stays stable from one call to the next.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MISSING_RESULT",
    "normalize_conversation",
    "ordered_blocks",
    "tool_result_block",
    "user_message",
]

# The answer given to a tool_use found without a result in stored history.
MISSING_RESULT = "Interrupted before it ran"


def user_message(text: str) -> dict[str, Any]:
    """The user message of a turn, in the shape the session stores it."""
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def tool_result_block(tool_use_id: str, content: str, is_error: bool) -> dict[str, Any]:
    """A ``tool_result`` content block answering ``tool_use_id``."""
    return {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": content,
        "is_error": is_error,
    }


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        return []
    # Empty text blocks are refused by the API ("text content blocks must be non-empty").
    return [
        b
        for b in content
        if isinstance(b, dict) and not (b.get("type") == "text" and not b.get("text"))
    ]


def _tool_use_ids(message: dict[str, Any]) -> list[str]:
    return [
        b["id"] for b in _blocks(message["content"]) if b.get("type") == "tool_use" and b.get("id")
    ]


def _merge_same_roles(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge consecutive messages of one role. The API combines them itself
    (``types/message_create_params.py``: "Consecutive user or assistant turns in
    your request will be combined into a single turn"); merging here keeps the
    tool_result-first rule and makes the conversation valid by construction."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        if merged and merged[-1]["role"] == message["role"]:
            content = _blocks(merged[-1]["content"]) + _blocks(message["content"])
            if message["role"] == "user":
                # tool_result blocks must come first in a user message.
                results = [b for b in content if b.get("type") == "tool_result"]
                content = results + [b for b in content if b.get("type") != "tool_result"]
            merged[-1] = {"role": message["role"], "content": content}
        else:
            merged.append(message)
    return merged


def _pair_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answer every unanswered tool_use and drop tool_results that answer nothing."""
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        previous = out[-1] if out else None
        if message["role"] == "assistant":
            out.append(message)
            wanted = _tool_use_ids(message)
            following = messages[index + 1] if index + 1 < len(messages) else None
            if wanted and (following is None or following["role"] != "user"):
                # Nothing answers these tool_uses: add the user message that should have.
                out.append(
                    {
                        "role": "user",
                        "content": [tool_result_block(t, MISSING_RESULT, True) for t in wanted],
                    }
                )
            continue
        wanted = _tool_use_ids(previous) if previous and previous["role"] == "assistant" else []
        seen: set[str] = set()
        results, others = [], []
        blocks = _blocks(message["content"])
        for block in blocks:
            if block.get("type") != "tool_result":
                others.append(block)
            elif block.get("tool_use_id") in wanted and block["tool_use_id"] not in seen:
                seen.add(block["tool_use_id"])
                results.append(block)
        missing = [tool_result_block(t, MISSING_RESULT, True) for t in wanted if t not in seen]
        content = results + missing + others
        if content:
            out.append(message if content == blocks else {"role": "user", "content": content})
    return out


def normalize_conversation(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A valid version of ``messages``: it starts with a user message, roles
    alternate, no message or text block is empty, and each assistant
    ``tool_use`` is answered by a ``tool_result`` at the start of the next
    message. A valid conversation comes back unchanged; the input is never
    mutated (changed messages are new dicts).
    """
    cleaned = []
    for message in messages:
        role = message.get("role")
        content = _blocks(message.get("content"))
        if role not in ("user", "assistant") or not content:
            continue
        if content == message.get("content") or isinstance(message.get("content"), str):
            # Unchanged messages stay the same objects (and a string content stays a
            # string), so the prefix the prompt cache saw is sent again byte for byte.
            cleaned.append(message)
        else:
            cleaned.append({"role": role, "content": content})
    while cleaned and cleaned[0]["role"] != "user":
        cleaned.pop(0)
    # Pairing can drop a user message that held only stray results, which can make
    # two assistant messages adjacent; a second pass settles that.
    for _ in range(3):
        before = cleaned
        cleaned = _pair_tool_results(_merge_same_roles(cleaned))
        while cleaned and cleaned[0]["role"] != "user":
            cleaned.pop(0)
        if cleaned == before:
            break
    return cleaned


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


def ordered_blocks(model_messages: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    """The ``text``, ``thinking`` and ``tool_use`` blocks of ``role``'s messages (and
    ``compaction`` marks), in the order the
    model (or the user) produced them, each ``tool_use`` with the ``result`` and
    ``is_error`` of the ``tool_result`` that answers it (None while unanswered).

    This is what a client shows as the message's history: a turn that read
    text, tool, text live reads the same when reloaded.
    """
    results: dict[str, tuple[str, bool]] = {}
    for message in model_messages:
        for block in _blocks(message.get("content")):
            if block.get("type") == "tool_result" and block.get("tool_use_id"):
                results[block["tool_use_id"]] = (
                    _result_text(block.get("content")),
                    bool(block.get("is_error")),
                )
    out: list[dict[str, Any]] = []
    for message in model_messages:
        if message.get("role") == "compaction":
            # Where the model's context was compacted (backend/agent/compaction.py).
            out.append(
                {
                    "type": "compaction",
                    "method": message.get("method", "summary"),
                    "tokens_before": int(message.get("tokensBefore", 0)),
                    "tokens_after": int(message.get("tokensAfter", 0)),
                }
            )
            continue
        if message.get("role") != role:
            continue
        for block in _blocks(message.get("content")):
            if block.get("type") == "text":
                out.append({"type": "text", "text": block["text"]})
            elif block.get("type") == "thinking" and block.get("thinking"):
                out.append({"type": "thinking", "text": block["thinking"]})
            elif block.get("type") == "tool_use" and block.get("id"):
                result, is_error = results.get(block["id"], (None, False))
                out.append(
                    {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": str(block.get("name", "")),
                        "arguments": block.get("input") or {},
                        "result": result,
                        "is_error": is_error,
                    }
                )
    return out
