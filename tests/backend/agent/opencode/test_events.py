"""``TurnMapper`` on OpenCode's events, shaped as ``opencode serve`` 1.18 sends them
(the end-to-end tests drive the real binary; these pin the mapping itself)."""

from __future__ import annotations

from typing import Any

from backend.agent.opencode.events import TurnMapper
from backend.records import ToolCall

SESSION = "ses_parent"


class Recorder:
    """A turn observer that writes down what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, Any]] = []

    async def on_text_delta(self, text: str) -> None:
        self.heard.append(("text", text))

    async def on_text_done(self, text: str) -> None:
        self.heard.append(("text_done", text))

    async def on_thinking_delta(self, text: str) -> None:
        self.heard.append(("thinking", text))

    async def on_thinking_done(self, text: str) -> None:
        self.heard.append(("thinking_done", text))

    async def on_tool_call(self, call: ToolCall) -> None:
        self.heard.append(("tool", call.name))

    async def on_tool_result(self, call: ToolCall) -> None:
        self.heard.append(("result", call.result))

    async def on_step(self, result: Any) -> None:
        pass


def _part(part: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message.part.updated",
        "properties": {"sessionID": SESSION, "part": {"messageID": "msg_a", **part}},
    }


def _delta(part_id: str, text: str) -> dict[str, Any]:
    props = {"sessionID": SESSION, "messageID": "msg_a", "partID": part_id, "field": "text"}
    return {"type": "message.part.delta", "properties": {**props, "delta": text}}


ASSISTANT = {
    "type": "message.updated",
    "properties": {"sessionID": SESSION, "info": {"id": "msg_a", "role": "assistant"}},
}


async def test_reasoning_parts_are_thinking_in_events_and_messages() -> None:
    observer = Recorder()
    mapper = TurnMapper(SESSION, observer)
    signature = {"anthropic": {"signature": "sig_1"}}
    for event in (
        ASSISTANT,
        _part({"id": "prt_r", "type": "reasoning", "text": "", "time": {"start": 1}}),
        _delta("prt_r", "Think "),
        _delta("prt_r", "hard."),
        _part(
            {
                "id": "prt_r",
                "type": "reasoning",
                "text": "Think hard.",
                "metadata": signature,
                "time": {"start": 1, "end": 2},
            }
        ),
        _part({"id": "prt_t", "type": "text", "text": "", "time": {"start": 3}}),
        _delta("prt_t", "Done."),
        _part({"id": "prt_t", "type": "text", "text": "Done.", "time": {"start": 3, "end": 4}}),
    ):
        assert await mapper.handle(event) is False
    assert observer.heard == [
        ("thinking", "Think "),
        ("thinking", "hard."),
        ("thinking_done", "Think hard."),
        ("text", "Done."),
        ("text_done", "Done."),
    ]
    result = mapper.result("end_turn")
    assert result.text == "Done."  # thinking is not the message's text
    assert result.model_messages == [
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Think hard.", "signature": "sig_1"},
                {"type": "text", "text": "Done."},
            ],
        }
    ]


async def test_permission_requests_of_the_session_and_its_subagents_are_kept() -> None:
    mapper = TurnMapper(SESSION, Recorder())

    def asked(request_id: str, session: str) -> dict[str, Any]:
        return {
            "type": "permission.asked",
            "properties": {
                "id": request_id,
                "sessionID": session,
                "permission": "bash",
                "patterns": ["ls"],
                "metadata": {},
                "always": ["ls *"],
                "tool": {"messageID": "msg_a", "callID": "toolu_1"},
            },
        }

    def created(session: str, parent: str) -> dict[str, Any]:
        return {
            "type": "session.created",
            "properties": {"info": {"id": session, "parentID": parent}},
        }

    for event in (
        asked("per_own", SESSION),
        asked("per_stranger", "ses_other"),  # another OpenCode session: not this turn's
        created("ses_child", SESSION),
        created("ses_grandchild", "ses_child"),
        created("ses_unrelated", "ses_other"),
        asked("per_child", "ses_child"),
        asked("per_grandchild", "ses_grandchild"),
        asked("per_unrelated", "ses_unrelated"),
    ):
        await mapper.handle(event)
    assert [r["id"] for r in mapper.permission_requests] == [
        "per_own",
        "per_child",
        "per_grandchild",
    ]
