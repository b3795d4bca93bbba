"""``GET .../messages`` keeps a turn's order: ``blocks`` interleave text and tools as streamed."""

from __future__ import annotations

from pathlib import Path

from tests.backend.api.conftest import api_for, make_settings
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic, reply


async def test_history_blocks_interleave_text_and_tools_sqlite(
    tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    await check_blocks(tmp_path, fake_model, str(tmp_path / "data" / "test.db"))


async def test_history_blocks_interleave_text_and_tools_postgres(
    tmp_path: Path, fake_model: FakeAnthropic, pg_dsn: str
) -> None:
    await check_blocks(tmp_path, fake_model, pg_dsn)


async def check_blocks(tmp_path: Path, fake_model: FakeAnthropic, database_url: str) -> None:
    settings = make_settings(tmp_path, fake_model.url, database_url=database_url)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        sid = await new_session(api, key)
        api.model.enqueue(
            reply().text("First I look.").tool_use("shell", {"command": "echo one"}),
            reply()
            .text("Then I write.")
            .tool_use("shell", {"command": "echo two"})
            .tool_use("read_file", {"path": "missing.txt"}),
            reply().text("All done."),
        )
        await collect(api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "go"})
        r = await api.http.get(f"/v1/sessions/{sid}/messages", headers=api.auth(key))
        assert r.status_code == 200, r.text
        user, assistant = r.json()["messages"]

    assert user["blocks"] == [{"type": "text", "text": "go"}]
    blocks = assistant["blocks"]
    assert [b["type"] for b in blocks] == [
        "text",
        "tool_use",
        "text",
        "tool_use",
        "tool_use",
        "text",
    ]
    assert [b["text"] for b in blocks if b["type"] == "text"] == [
        "First I look.",
        "Then I write.",
        "All done.",
    ]
    tools = [b for b in blocks if b["type"] == "tool_use"]
    assert [t["arguments"] for t in tools] == [
        {"command": "echo one"},
        {"command": "echo two"},
        {"path": "missing.txt"},
    ]
    assert "one" in tools[0]["result"] and not tools[0]["isError"]
    assert tools[2]["isError"]
    assert {t["id"] for t in tools} == {t["id"] for t in assistant["toolCalls"]}
    # The older fields stay as they were, for clients that do not read blocks.
    assert assistant["content"] == "First I look.\n\nThen I write.\n\nAll done."
    assert len(assistant["toolCalls"]) == 3
