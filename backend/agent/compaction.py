"""Context compaction: keep a long session inside the model's context window.

Two ways, chosen per model from the models list:

- **API compaction** (models whose capabilities list ``compact_20260112``): each
  call carries the ``context_management`` edit with the trigger at our threshold;
  the API summarises old context itself and returns a ``compaction`` block, which
  stays in the assistant message and is sent back verbatim (the API then ignores
  what precedes it).
- **A summary of our own** (every other model): before a call whose input would
  pass the threshold, the older part of the conversation is summarised by one
  extra model call and replaced by that summary.

The replacement is recorded in the stored model messages as a *compaction
marker*, ``{"role": "compaction", "messages": [...], ...}``: everything before a
marker is replaced by its ``messages``. The transcript clients see (message
contents, tool calls, events) is never touched; only what the model gets is.
"""

from __future__ import annotations

import json
from typing import Any

from backend.agent.conversation import normalize_conversation

__all__ = [
    "COMPACT_BETA",
    "SUMMARY_REQUEST",
    "apply_compaction",
    "compacted",
    "compaction_marker",
    "context_management",
    "estimate_tokens",
    "split_for_summary",
    "summary_conversation",
]

COMPACT_BETA = "compact-2026-01-12"
MARKER_ROLE = "compaction"
SUMMARY_REQUEST = (
    "Summarise the conversation so far for your own later use: it will replace the "
    "messages above, which you will no longer see. Keep the user's goals and "
    "instructions, decisions taken, files created or changed (with paths), commands "
    "run and their important results, errors met and how they were solved, and what "
    "remains to do. Be concise but complete; write it as notes, not as a reply."
)
SUMMARY_PREFIX = "[Summary of the earlier conversation, written when it was compacted]\n\n"


def estimate_tokens(value: Any) -> int:
    """A quick upper-ish estimate of the tokens of a JSON-able value (4 bytes a token)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"))) // 4 + 1


def compaction_marker(messages: list[dict[str, Any]], **info: Any) -> dict[str, Any]:
    """The stored marker: everything before it is replaced by ``messages``."""
    return {"role": MARKER_ROLE, "messages": messages, **info}


def apply_compaction(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``messages`` with every compaction marker applied (the last one wins)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.get("role") == MARKER_ROLE:
            out = list(message.get("messages") or [])
        else:
            out.append(message)
    return out


def split_for_summary(
    conversation: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(head, tail): the head gets summarised, the tail is kept as is.

    The tail is the last user message and, when that message answers tool calls,
    the assistant message that made them, so the conversation after the summary
    still pairs every tool_use with its result.
    """
    if not conversation:
        return [], []
    cut = len(conversation) - 1
    last = conversation[cut]
    content = last.get("content") if isinstance(last.get("content"), list) else []
    if any(b.get("type") == "tool_result" for b in content) and cut > 0:
        cut -= 1
    return conversation[:cut], conversation[cut:]


def summary_conversation(head: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the summarising call sends: the head, then the request for a summary."""
    request = {"role": "user", "content": [{"type": "text", "text": SUMMARY_REQUEST}]}
    return normalize_conversation([*head, request])


def compacted(summary: str, tail: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation after compaction: the summary as a user message, then the tail."""
    first = {"role": "user", "content": [{"type": "text", "text": SUMMARY_PREFIX + summary}]}
    # user(summary), assistant(tool_use...), user(tool_result...) is valid as it is;
    # user(summary), user(text) is merged into one message.
    return normalize_conversation([first, *tail])


def context_management(trigger_tokens: int) -> dict[str, Any]:
    """The ``context_management`` parameter of API compaction."""
    return {
        "edits": [
            {
                "type": "compact_20260112",
                "trigger": {"type": "input_tokens", "value": trigger_tokens},
            }
        ]
    }
