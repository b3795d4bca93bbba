"""normalize_conversation: stored history repaired into what the API accepts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from backend.agent.conversation import MISSING_RESULT, normalize_conversation, user_message
from tests.fakes.fake_anthropic import validate_request


def text(role: str, value: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": value}]}


def tool_use(*ids: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": i, "name": "shell", "input": {}} for i in ids],
    }


def results(*ids: str) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": i, "content": "ok", "is_error": False}
            for i in ids
        ],
    }


def missing(i: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": i, "content": MISSING_RESULT, "is_error": True}


def check(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    before = copy.deepcopy(messages)
    out = normalize_conversation(messages)
    assert messages == before, "the input must not be mutated"
    validate_request({"model": "m", "max_tokens": 1, "messages": out})
    return out


def test_a_valid_conversation_is_unchanged():
    messages = [
        {"role": "user", "content": "plain string content"},
        tool_use("a", "b"),
        results("a", "b"),
        text("assistant", "done"),
        user_message("next"),
    ]
    out = check(messages)
    assert out == messages
    assert all(o is m for o, m in zip(out, messages, strict=True))


def test_consecutive_user_messages_are_merged():
    out = check([user_message("one"), user_message("two")])
    assert out == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        }
    ]


def test_trailing_tool_results_then_user_text_keep_results_first():
    out = check([user_message("go"), tool_use("a"), results("a"), user_message("and now?")])
    assert out[-1]["content"][0]["type"] == "tool_result"
    assert out[-1]["content"][-1] == {"type": "text", "text": "and now?"}


def test_unanswered_tool_use_gets_a_result():
    out = check([user_message("go"), tool_use("a", "b"), results("a"), user_message("hm")])
    assert out[2]["content"][:2] == [results("a")["content"][0], missing("b")]
    assert out[2]["content"][-1] == {"type": "text", "text": "hm"}


def test_tool_use_at_the_end_gets_a_user_message():
    out = check([user_message("go"), tool_use("a")])
    assert out[-1] == {"role": "user", "content": [missing("a")]}


def test_stray_tool_results_are_dropped():
    out = check([user_message("go"), text("assistant", "hi"), results("zzz"), user_message("x")])
    assert out == [user_message("go"), text("assistant", "hi"), user_message("x")]


def test_a_message_of_only_stray_results_disappears_and_neighbours_merge():
    out = check(
        [user_message("go"), text("assistant", "a"), results("zzz"), text("assistant", "b")]
    )
    assert out == [
        user_message("go"),
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
    ]


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": ""}, user_message("x")],
        [{"role": "user", "content": []}, user_message("x")],
        [{"role": "user", "content": [{"type": "text", "text": ""}]}, user_message("x")],
        [text("assistant", "orphan"), user_message("x")],
        [{"role": "system", "content": "?"}, user_message("x")],
    ],
)
def test_empty_and_leading_junk_is_dropped(messages):
    assert check(messages) == [user_message("x")]


def test_ordered_blocks_pair_tool_uses_with_their_results_in_order() -> None:
    from backend.agent.conversation import ordered_blocks

    turn = [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Look."},
                {"type": "tool_use", "id": "t1", "name": "shell", "input": {"command": "ls"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "a"}],
                }
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Now."},
                {"type": "tool_use", "id": "t2", "name": "shell", "input": {}},
            ],
        },
    ]
    assert ordered_blocks(turn, "assistant") == [
        {"type": "text", "text": "Look."},
        {
            "type": "tool_use",
            "id": "t1",
            "name": "shell",
            "arguments": {"command": "ls"},
            "result": "a",
            "is_error": False,
        },
        {"type": "text", "text": "Now."},
        {
            "type": "tool_use",
            "id": "t2",
            "name": "shell",
            "arguments": {},
            "result": None,
            "is_error": False,
        },
    ]
    assert ordered_blocks(turn, "user") == []
