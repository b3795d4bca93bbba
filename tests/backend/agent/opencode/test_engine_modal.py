"""engine=opencode on the Modal provider, end to end over the signature-checked fake.

What is fake and what is real: every Modal call goes through
``tests/fakes/fake_modal.py``, which binds its arguments to the installed SDK's
signatures. The fake builds the sandbox image from ``sandbox/sandbox.py``'s
recipe, and its ``npm install -g opencode-ai@<pinned>`` step links the host's
real ``opencode`` (the same pinned version, or the build fails) into the
sandbox's ``/usr/local/bin``. So the engine starts the real ``opencode serve``
through ``Sandbox.exec``, reaches it through the URL ``Sandbox.tunnels`` gives
for the encrypted port (loopback here, TLS on Modal) with the per-start
password, and OpenCode calls this server's model proxy at
``AGENT_TUI_PUBLIC_URL``, which forwards to the fake model with the real key.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from backend.agent.opencode import find_opencode
from backend.agent.opencode.binary import OPENCODE_VERSION
from backend.agent.opencode.engine import SESSION_FILE
from sandbox import modal_provider
from sandbox.modal_provider import ModalSandboxProvider
from tests.backend.agent.opencode.conftest import SECRET_KEY
from tests.backend.agent.opencode.test_engine import (
    engine_of,
    model_call_hangs,
    turn,
    types,
    write_and_run_turn,
)
from tests.backend.api.conftest import Api, api_for, make_settings, server_socket
from tests.backend.api.test_sessions import collect, new_session
from tests.fakes.fake_anthropic import FakeAnthropic, reply
from tests.fakes.fake_modal import Call, FakeModal, FakeModalCloud


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def cloud(tmp_path: Path, need_opencode: None) -> AsyncIterator[FakeModalCloud]:
    fake = FakeModalCloud(tmp_path / "modal")
    fake.npm_packages["opencode-ai"] = (OPENCODE_VERSION, "opencode", Path(find_opencode()))
    yield fake
    await fake.shutdown()


def _settings(tmp_path: Path, fake_model: FakeAnthropic, public_url: str) -> Any:
    return make_settings(
        tmp_path,
        fake_model.url,
        anthropic_api_key=SECRET_KEY,
        sandbox_provider="modal",
        agent_engine="opencode",
        public_url=public_url,
        opencode_start_timeout_seconds=120.0,
        keepalive_seconds=600.0,
    )


@pytest.fixture
async def modal_oc(
    tmp_path: Path,
    fake_model: FakeAnthropic,
    cloud: FakeModalCloud,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Api]:
    """The server on the fake Modal with engine=opencode, its public URL its own."""
    # The fake runs a sandbox's processes on this host: a free port stands for 4096.
    monkeypatch.setattr(modal_provider, "SERVICE_PORT", _free_port())
    fake_model.api_key = SECRET_KEY
    sock = server_socket()
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}/"  # the trailing / is dropped
    settings = _settings(tmp_path, fake_model, public_url)
    provider = ModalSandboxProvider(settings, modal_module=FakeModal(cloud))
    async with api_for(settings, fake_model, sock=sock, provider=provider) as running:
        yield running


def _service_starts(cloud: FakeModalCloud) -> list[Call]:
    return [c for c in cloud.calls_to("Sandbox.exec") if "agent-service" in c.args]


def _opencode_running(cloud: FakeModalCloud, sandbox_id: str) -> bool:
    return any(" serve " in line for line in cloud.processes_of(sandbox_id))


async def test_a_turn_on_modal_streams_text_runs_a_tool_interrupts_and_replays(
    modal_oc: Api, cloud: FakeModalCloud
) -> None:
    api = modal_oc
    key = await api.key()
    sid = await new_session(api, key, engine="opencode")
    session = (await api.http.get(f"/v1/sessions/{sid}", headers=api.auth(key))).json()
    assert session["engine"] == "opencode" and session["sandbox"]["provider"] == "modal"
    sandbox_id = session["sandbox"]["id"]

    # The image installed the pinned OpenCode; the sandbox exposes the service port
    # as an encrypted tunnel, and the engine reaches OpenCode through it.
    create = cloud.calls_to("Sandbox.create")[0].kwargs
    assert f"npm install -g opencode-ai@{OPENCODE_VERSION}" in " ".join(create["image"].recipe)
    assert create["encrypted_ports"] == [modal_provider.SERVICE_PORT]
    runtime = engine_of(api)._runtimes[sid]
    assert len(cloud.calls_to("Sandbox.tunnels")) == 1
    assert runtime.service.base_url == f"http://127.0.0.1:{modal_provider.SERVICE_PORT}"
    assert runtime.service.headers["Authorization"].startswith("Basic ")
    # The service's start: the in-image program on the service port, its environment
    # holding the proxy token and the public URL, never the Anthropic key.
    [start] = _service_starts(cloud)
    assert start.args[start.args.index("agent-service") + 4 :] == (
        "opencode",
        "serve",
        "--pure",
        "--hostname",
        "127.0.0.1",
        "--port",
        str(modal_provider.SERVICE_PORT),
    )
    env = start.kwargs["env"]
    assert SECRET_KEY not in json.dumps(env) and SECRET_KEY not in json.dumps(start.args)
    provider_options = json.loads(env["OPENCODE_CONFIG_CONTENT"])["provider"]["agent-tui"]
    assert provider_options["options"] == {
        "baseURL": f"{api.url}/v1/model-proxy/{sid}/v1",
        "apiKey": runtime.token,
    }
    assert env["OPENCODE_SERVER_PASSWORD"] and env["HOME"].startswith("/workspace/.agent-tui/")
    # The OpenCode session id is kept in the workspace, through Modal's filesystem API.
    kept = (await _read(api, cloud, sandbox_id, SESSION_FILE)).decode().strip()
    assert kept == runtime.opencode_session

    # A turn: text, a tool that writes and runs a file in the sandbox's workspace.
    events = await write_and_run_turn(api, key, sid)
    got = await api.http.get(f"/v1/sessions/{sid}/files/calc.py", headers=api.auth(key))
    assert got.status_code == 200 and got.text == "print(6*7)"
    # The model calls went through the proxy at the public URL, which added the real
    # key (the fake model accepts no other) and recorded them for the session.
    deadline = asyncio.get_running_loop().time() + 30
    while (await api.store.usage_summary("alice", session_id=sid)).by_type.get(
        "proxy.requests", 0
    ) < 2:
        assert asyncio.get_running_loop().time() < deadline, "the proxy recorded no requests"
        await asyncio.sleep(0.05)

    # Interrupt: OpenCode's model call hangs until the abort.
    api.model.enqueue(reply().text("one two three four five six").hang(after_deltas=2))
    interrupted: list[dict[str, Any]] = []
    task = asyncio.create_task(_extend(interrupted, turn(api, key, sid, "count slowly")))
    await model_call_hangs(api, sid)
    r = await api.http.post(f"/v1/sessions/{sid}/interrupt", headers=api.auth(key))
    assert r.status_code == 200
    await asyncio.wait_for(task, 60)
    assert types(interrupted)[-2:] == ["message.complete", "session.idle"]
    assert interrupted[-2]["data"]["stopReason"] == "interrupted"
    # Replay from before the first turn gives what was streamed, in order.
    replay = await collect(
        api,
        "GET",
        f"/v1/sessions/{sid}/events",
        key,
        headers={"Last-Event-ID": str(events[0]["seq"] - 1)},
        until="session.idle",
    )
    assert [(e["seq"], e["type"]) for e in replay] == [(e["seq"], e["type"]) for e in events]
    # Nothing of the sandbox (workspace, OpenCode's data, logs) holds the key.
    assert SECRET_KEY.encode() not in await asyncio.to_thread(cloud.all_bytes)


async def _extend(into: list[dict[str, Any]], events: Any) -> None:
    into.extend(await events)


async def _read(api: Api, cloud: FakeModalCloud, sandbox_id: str, path: str) -> bytes:
    state = cloud.sandboxes[sandbox_id]
    return await asyncio.to_thread((state.root / "workspace" / path).read_bytes)


async def test_pause_resume_on_modal_continue_the_opencode_session(
    modal_oc: Api, cloud: FakeModalCloud
) -> None:
    api = modal_oc
    key = await api.key()
    sid = await new_session(api, key)
    api.model.enqueue(reply().text("noted"))
    await turn(api, key, sid, "the secret word is kiwi")
    first = engine_of(api)._runtimes[sid]
    first_sandbox = first.service._sandbox.id
    assert _opencode_running(cloud, first_sandbox)

    paused = await api.http.post(f"/v1/sessions/{sid}/pause", headers=api.auth(key))
    assert paused.status_code == 200 and paused.json()["status"] == "paused", paused.text
    snapshot = api.services.registry.loaded_actor(sid).record.snapshot_id
    # OpenCode was stopped (and had exited) before the filesystem was snapshotted.
    assert not any(" serve " in line for line in cloud.running_at_snapshot[snapshot])
    assert cloud.running() == [] and sid not in engine_of(api)._runtimes
    assert await api.app.state.model_proxy.tokens.verify(first.token, sid) is None

    resumed = await api.http.post(f"/v1/sessions/{sid}/resume", headers=api.auth(key))
    assert resumed.status_code == 200, resumed.text
    second = engine_of(api)._runtimes[sid]
    assert second.service._sandbox.id != first_sandbox
    assert second.opencode_session == first.opencode_session  # read back from the workspace
    assert len(_service_starts(cloud)) == 2
    api.model.enqueue(reply().text("kiwi"))
    events = await turn(api, key, sid, "what was the word?")
    assert types(events)[-1] == "session.idle"
    # OpenCode sent the earlier exchange with the new question: the conversation continued.
    sent = str(api.model.bodies[-1]["messages"])
    assert "kiwi" in sent and "what was the word?" in sent

    deleted = await api.http.delete(f"/v1/sessions/{sid}", headers=api.auth(key))
    assert deleted.json()["status"] == "terminated"
    assert cloud.running() == []
    assert not _opencode_running(cloud, second.service._sandbox.id)
    assert await api.app.state.model_proxy.tokens.verify(second.token, sid) is None


async def test_without_a_public_url_an_opencode_session_on_modal_says_what_to_set(
    tmp_path: Path, fake_model: FakeAnthropic, cloud: FakeModalCloud
) -> None:
    settings = _settings(tmp_path, fake_model, public_url="")
    provider = ModalSandboxProvider(settings, modal_module=FakeModal(cloud))
    async with api_for(settings, fake_model, provider=provider) as api:
        key = await api.key()
        events = await collect(
            api, "POST", "/v1/sessions", key, until="session.error", json={"engine": "opencode"}
        )
        error = events[-1]["data"]
        assert error["code"] == "SANDBOX_ERROR"
        assert "AGENT_TUI_PUBLIC_URL" in error["message"], error
        assert _service_starts(cloud) == []  # nothing was started without a proxy to call
        # The built-in engine is unaffected.
        assert await new_session(api, key, engine="builtin")
