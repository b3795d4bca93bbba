"""API compaction (beta ``compact_20260112``) for a model whose capabilities list it:
the request carries the edit, the compaction block is announced and sent back verbatim."""

from __future__ import annotations

from pathlib import Path

from tests.backend.api.conftest import api_for, make_settings
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic, reply


async def test_api_compaction_edit_and_block_round_trip(
    tmp_path: Path, fake_model: FakeAnthropic
) -> None:
    from tests.fakes import fake_anthropic

    fake = fake_model
    fake.models = [fake_anthropic.fake_model("compacting-model", compaction=True)]
    settings = make_settings(tmp_path, fake.url, anthropic_model="compacting-model")
    async with api_for(settings, fake) as api:
        key = await api.key()
        session = await new_session(api, key)
        fake.enqueue(reply().compaction("The user asked for A; done.").text("Hello again."))
        events = await collect(
            api,
            "POST",
            f"/v1/sessions/{session}/messages",
            key,
            until="session.idle",
            json={"content": "one"},
        )
        body = fake.bodies[-1]
        assert body["context_management"] == {
            "edits": [
                {"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 150_000}}
            ]
        }
        request = fake.message_requests[-1]
        assert "compact-2026-01-12" in request.headers.get("anthropic-beta", "")
        [compacted] = [e["data"] for e in events if e["type"] == "context.compacted"]
        assert compacted["method"] == "api" and compacted["automatic"] is True
        # The next turn sends the compaction block back as it came.
        await collect(
            api,
            "POST",
            f"/v1/sessions/{session}/messages",
            key,
            until="session.idle",
            json={"content": "two"},
        )
        assistant = fake.bodies[-1]["messages"][1]
        block = assistant["content"][0]
        assert block["type"] == "compaction"
        assert block["content"] == "The user asked for A; done."
        assert block["encrypted_content"].startswith("enc_")
