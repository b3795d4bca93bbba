"""Services in a Modal sandbox (over the signature-checking fake): started in the
background, reached through the sandbox's tunnel with a per-start password,
stopped on request."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from backend.errors import SandboxError
from backend.settings import Settings
from sandbox import modal_provider
from sandbox.base import ServiceSpec
from sandbox.modal_provider import ModalSandboxProvider
from tests.fakes.fake_modal import FakeModal, FakeModalCloud

# A stand-in service: answers 200 to the right basic auth, 401 otherwise.
SERVICE = """
import base64, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
want = "Basic " + base64.b64encode(("svc:" + os.environ["SVC_PASSWORD"]).encode()).decode()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.headers.get("Authorization") == want
        self.send_response(200 if ok else 401); self.end_headers()
        self.wfile.write(b"ok" if ok else b"no")
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[FakeModalCloud]:
    fake = FakeModalCloud(tmp_path / "modal")
    yield fake
    await fake.shutdown()


async def test_a_service_runs_behind_the_tunnel_with_a_password(
    cloud: FakeModalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake runs a sandbox's processes on this host: a free port stands for 4096.
    monkeypatch.setattr(modal_provider, "SERVICE_PORT", _free_port())
    provider = ModalSandboxProvider(Settings(), modal_module=FakeModal(cloud))
    sandbox = await provider.create("0f2c4d0e-0000-4000-8000-000000000001")
    create = cloud.calls_to("Sandbox.create")[-1]
    assert create.kwargs["encrypted_ports"] == [modal_provider.SERVICE_PORT]
    spec = ServiceSpec(
        name="svc",
        argv=("python3", "-c", SERVICE, "{port}"),
        port=0,
        env={"SOMETHING": "port {port}"},
        password_env="SVC_PASSWORD",
    )
    service = await sandbox.start_service(spec)
    assert service.base_url == f"http://127.0.0.1:{modal_provider.SERVICE_PORT}"
    assert await service.is_running()
    async with httpx.AsyncClient(base_url=service.base_url) as http:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            try:
                answer = await http.get("/", headers=service.headers)
                break
            except httpx.TransportError:
                assert asyncio.get_running_loop().time() < deadline, "the service never answered"
                await asyncio.sleep(0.1)
        assert answer.status_code == 200 and answer.text == "ok"
        assert (await http.get("/")).status_code == 401
    # The service directory stays out of git (a .gitignore of "*" in it).
    git = await sandbox.exec(
        "git init -q . && git status --porcelain --untracked-files=all", timeout=60
    )
    assert git.exit_code == 0 and git.stdout == "", git
    await service.stop()
    # stop() returns once the service has exited: a pause snapshots right after it.
    assert not any("SVC_PASSWORD" in line for line in cloud.processes_of(sandbox.id))
    await provider.terminate(sandbox.session_id, sandbox.id, None)


# A service that ignores SIGTERM (and says when it is up).
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
time.sleep(600)
"""


async def test_a_service_that_ignores_sigterm_is_killed_after_the_grace(
    cloud: FakeModalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modal_provider, "SERVICE_PORT", _free_port())
    monkeypatch.setattr(modal_provider, "SERVICE_STOP_GRACE_TICKS", 5)
    provider = ModalSandboxProvider(Settings(), modal_module=FakeModal(cloud))
    sandbox = await provider.create("0f2c4d0e-0000-4000-8000-000000000003")
    spec = ServiceSpec(name="stubborn", argv=("python3", "-c", STUBBORN), port=0)
    service = await sandbox.start_service(spec)
    log = cloud.sandboxes[sandbox.id].root / "workspace" / ".agent-tui" / "stubborn.log"
    deadline = asyncio.get_running_loop().time() + 60
    while not (log.exists() and "up" in log.read_text()):  # SIG_IGN is in place
        assert asyncio.get_running_loop().time() < deadline, "the service never started"
        await asyncio.sleep(0.1)
    await service.stop()
    assert not any("SIG_IGN" in line for line in cloud.processes_of(sandbox.id))
    await service.stop()  # idempotent
    await provider.terminate(sandbox.session_id, sandbox.id, None)


async def test_a_private_host_app_cannot_be_relayed_into_modal(cloud: FakeModalCloud) -> None:
    provider = ModalSandboxProvider(Settings(), modal_module=FakeModal(cloud))
    sandbox = await provider.create("0f2c4d0e-0000-4000-8000-000000000002")
    with pytest.raises(SandboxError):
        await sandbox.start_service(
            ServiceSpec(name="svc", argv=("true",), port=0, host_app=object())
        )
    await provider.terminate(sandbox.session_id, sandbox.id, None)
