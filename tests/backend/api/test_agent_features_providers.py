"""Issue 9 on the other store and the other sandbox provider: a permission request
answered after a restart on PostgreSQL, and live tool output on (fake) Modal."""

from __future__ import annotations

from pathlib import Path

import httpx

from sandbox.modal_provider import ModalSandboxProvider
from tests.backend.api.conftest import api_for, make_settings, turn_stream
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic, reply
from tests.fakes.fake_modal import FakeModal, FakeModalCloud


async def test_permission_answered_after_a_restart_on_postgres(
    tmp_path: Path, fake_model: FakeAnthropic, pg_dsn: str
) -> None:
    settings = make_settings(tmp_path, fake_model.url, database_url=pg_dsn)
    async with api_for(settings, fake_model) as api:
        key = await api.key()
        session = await new_session(api, key)
        r = await api.http.patch(
            f"/v1/sessions/{session}", json={"permissionMode": "ask"}, headers=api.auth(key)
        )
        assert r.status_code == 200
        fake_model.enqueue(
            reply().tool_use("write_file", {"path": "pg.txt", "content": "ok"}),
            reply().text("written"),
        )
        async with turn_stream(api, key, session, "write it") as events:
            async for event in events:
                if event["type"] == "permission.requested":
                    break
    async with api_for(settings, fake_model) as api:
        got = (await api.http.get(f"/v1/sessions/{session}", headers=api.auth(key))).json()
        [pending] = got["pendingPermissions"]
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as second:
            r = await second.post(
                f"/v1/sessions/{session}/permissions/{pending['requestId']}",
                json={"decision": "allow"},
                headers=api.auth(key),
            )
        assert r.status_code == 200 and r.json()["decision"] == "allow"
        events = await collect(
            api,
            "GET",
            f"/v1/sessions/{session}/events",
            key,
            params={"after": got["lastEventId"]},
            until="session.idle",
        )
        assert any(e["type"] == "message.complete" for e in events)
        workspace = settings.data_dir / "sandboxes" / "live" / session / "workspace"
        assert (workspace / "pg.txt").read_text() == "ok"


async def test_live_tool_output_on_modal(tmp_path: Path, fake_model: FakeAnthropic) -> None:
    cloud = FakeModalCloud(tmp_path / "modal")
    settings = make_settings(tmp_path, fake_model.url, sandbox_provider="modal")
    provider = ModalSandboxProvider(settings, modal_module=FakeModal(cloud))
    async with api_for(settings, fake_model, provider=provider) as api:
        key = await api.key()
        sid = await new_session(api, key)
        api.model.enqueue(
            reply().tool_use("shell", {"command": "echo out-line; echo err-line >&2"}),
            reply().text("done"),
        )
        events = await collect(
            api,
            "POST",
            f"/v1/sessions/{sid}/messages",
            key,
            json={"content": "go"},
            until="session.idle",
        )
        outputs = [e for e in events if e["type"] == "tool.output"]
        text = {
            s: "".join(e["data"]["text"] for e in outputs if e["data"]["stream"] == s)
            for s in ("stdout", "stderr")
        }
        assert "out-line" in text["stdout"] and "err-line" in text["stderr"]
        result_seq = next(
            e["seq"]
            for e in events
            if e["type"] == "message.tool" and e["data"]["status"] == "result"
        )
        assert max(e["seq"] for e in outputs) < result_seq
