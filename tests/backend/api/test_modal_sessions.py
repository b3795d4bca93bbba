"""A whole session through HTTP with SANDBOX_PROVIDER=modal, on the fake Modal
(every call checked against the installed SDK's signatures)."""

from __future__ import annotations

from pathlib import Path

from sandbox.modal_provider import ModalSandboxProvider
from tests.backend.api.conftest import api_for, make_settings
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import reply
from tests.fakes.fake_modal import FakeModal, FakeModalCloud


async def test_session_on_modal_create_turn_pause_resume_delete(tmp_path: Path, fake_model) -> None:
    cloud = FakeModalCloud(tmp_path / "modal")
    settings = make_settings(tmp_path, fake_model.url, sandbox_provider="modal")
    provider = ModalSandboxProvider(settings, modal_module=FakeModal(cloud))
    async with api_for(settings, fake_model, provider=provider) as api:
        key = await api.key()
        sid = await new_session(api, key)
        session = (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()
        assert session["sandbox"]["provider"] == "modal" and session["sandbox"]["id"].startswith(
            "sb-"
        )
        assert len(cloud.running()) == 1

        api.model.enqueue(
            reply().tool_use("shell", {"command": "echo on-modal > proof.txt"}),
            reply().text("done"),
        )
        events = await collect(
            api, "POST", f"/v1/sessions/{sid}/messages", key, json={"content": "go"}
        )
        result = next(
            e for e in events if e["type"] == "message.tool" and e["data"]["status"] == "result"
        )
        assert result["data"]["isError"] is False
        assert (
            await api.http.get(f"/v1/sessions/{sid}/files/proof.txt", headers=api.auth(key))
        ).text == "on-modal\n"

        paused = (await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key))).json()
        assert paused["status"] == "paused" and cloud.running() == []
        resumed = (await api.http.post(f"/v1/sessions/{sid}/resume", headers=api.auth(key))).json()
        assert resumed["status"] == "idle" and resumed["sandbox"]["id"] != session["sandbox"]["id"]
        assert (
            await api.http.get(f"/v1/sessions/{sid}/files/proof.txt", headers=api.auth(key))
        ).text == "on-modal\n"

        deleted = await api.http.delete(f"/v1/sessions/{sid}", headers=api.auth(key))
        assert deleted.json()["status"] == "terminated" and cloud.running() == []


async def test_lost_snapshot_turns_the_session_to_error(tmp_path: Path, fake_model) -> None:
    cloud = FakeModalCloud(tmp_path / "modal")
    settings = make_settings(tmp_path, fake_model.url, sandbox_provider="modal")
    provider = ModalSandboxProvider(settings, modal_module=FakeModal(cloud))
    async with api_for(settings, fake_model, provider=provider) as api:
        key = await api.key()
        sid = await new_session(api, key)
        await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key))
        snapshot = api.services.registry.loaded_actor(sid).record.snapshot_id
        cloud.delete_image(snapshot)
        r = await api.http.post(f"/v1/sessions/{sid}/resume", headers=api.auth(key))
        assert r.status_code == 502 and r.json()["error"]["code"] == "SANDBOX_ERROR"
        session = (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()
        assert session["status"] == "error" and session["error"]["code"] == "SNAPSHOT_LOST"
        assert "snapshot" in session["error"]["message"].lower()
        # From now on the session refuses work with 409, and says why; its history stays.
        again = await api.http.post(f"/v1/sessions/{sid}/resume", headers=api.auth(key))
        assert again.status_code == 409 and again.json()["error"]["code"] == "SESSION_FAILED"
        assert again.json()["error"]["details"]["error"]["code"] == "SNAPSHOT_LOST"
        files = await api.http.get(f"/v1/sessions/{sid}/files/", headers=api.auth(key))
        assert files.status_code == 409 and files.json()["error"]["code"] == "SESSION_FAILED"
        assert (
            await api.http.get(f"/v1/sessions/{sid}/messages", headers=api.auth(key))
        ).status_code == 200
        events = await collect(
            api, "GET", f"/v1/sessions/{sid}/events?after=0", key, until="session.error"
        )
        assert events[-1]["data"]["code"] == "SNAPSHOT_LOST"
