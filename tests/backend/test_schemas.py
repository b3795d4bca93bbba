"""Wire shapes built from records."""

from __future__ import annotations

from datetime import UTC, datetime

from backend.records import MessageRecord, ToolCall
from backend.schemas import MessageOut


def test_a_message_stored_without_model_messages_still_has_blocks() -> None:
    record = MessageRecord(
        id="m",
        session_id="s",
        role="assistant",
        content="Hello.",
        created_at=datetime.now(UTC),
        tool_calls=[ToolCall("t", "shell", {"command": "ls"}, "x", False)],
    )
    wire = MessageOut.of(record).to_wire()
    assert [b["type"] for b in wire["blocks"]] == ["text", "tool_use"]
    assert wire["blocks"][1] == {
        "type": "tool_use",
        "id": "t",
        "name": "shell",
        "arguments": {"command": "ls"},
        "result": "x",
        "isError": False,
    }
    # A client of an older server parses a message without blocks.
    del wire["blocks"]
    assert MessageOut.model_validate(wire).blocks == []
