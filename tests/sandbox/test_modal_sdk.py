"""The provider against the installed Modal SDK itself, offline.

The service is not reachable here, so these tests pin what can be checked
without it: every call the provider makes binds to the real signatures, the
fake is as strict as the SDK, the SDK's local validations fire where we rely on
them, and a server without credentials gets an actionable error.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import modal
import modal.client
import modal.exception as mexc
import pytest
from modal._utils.async_utils import synchronizer
from modal.container_process import ContainerProcess
from modal.io_streams import StreamReader
from modal.sandbox.sandbox import SandboxFilesystem

import sandbox.sandbox as sandbox_app
from backend.agent.opencode.binary import OPENCODE_VERSION
from backend.errors import SandboxError
from backend.settings import Settings
from sandbox.modal_provider import ModalSandboxProvider
from tests.fakes.fake_modal import FakeModal, FakeModalCloud

# Every SDK entry point the provider may call, by the fake's name for it.
REAL_ENTRY_POINTS = {
    "App.lookup": modal.App.lookup,
    "Sandbox.create": modal.Sandbox.create,
    "Sandbox.from_id": modal.Sandbox.from_id,
    "Sandbox.list": modal.Sandbox.list,
    "Sandbox.exec": modal.Sandbox.exec,
    "Sandbox.terminate": modal.Sandbox.terminate,
    "Sandbox.poll": modal.Sandbox.poll,
    "Sandbox.snapshot_filesystem": modal.Sandbox.snapshot_filesystem,
    "Sandbox.get_tags": modal.Sandbox.get_tags,
    "filesystem.read_bytes": SandboxFilesystem.read_bytes,
    "filesystem.write_bytes": SandboxFilesystem.write_bytes,
    "filesystem.list_files": SandboxFilesystem.list_files,
    "ContainerProcess.wait": ContainerProcess.wait,
    "StreamReader.read": StreamReader.read,
}
SYNC_ENTRY_POINTS = {
    "Image.from_id": modal.Image.from_id,
    "Image.debian_slim": modal.Image.debian_slim,
    "Image.apt_install": modal.Image.apt_install,
    "Image.run_commands": modal.Image.run_commands,
    "Image.env": modal.Image.env,
    "Image.workdir": modal.Image.workdir,
}


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[FakeModalCloud]:
    fake = FakeModalCloud(tmp_path / "modal")
    yield fake
    await fake.shutdown()


def bind(real: object, call_args: tuple, call_kwargs: dict) -> None:
    """Bind a recorded call to the real SDK signature (minus self), as Modal would."""
    signature = inspect.signature(getattr(real, "aio", real))
    params = list(signature.parameters.values())
    if params and params[0].name in ("self", "cls"):
        signature = signature.replace(parameters=params[1:])
    signature.bind(*call_args, **call_kwargs)


async def test_a_whole_session_calls_modal_only_through_real_signatures(
    cloud: FakeModalCloud, tmp_path: Path
) -> None:
    """Replay every recorded call against the SDK, independently of the fake's own check."""
    provider = ModalSandboxProvider(Settings(), modal_module=FakeModal(cloud))
    sandbox = await provider.create("s")
    await sandbox.exec("echo hi", timeout=5)
    await sandbox.write_file("a.txt", b"a")
    await sandbox.read_file("a.txt")
    await sandbox.list_dir("")
    await sandbox.is_alive()
    snapshot_id = await provider.pause(sandbox)
    resumed = await provider.resume("s", snapshot_id)
    await provider.attach("s", resumed.id)
    await provider.sweep({"s"})
    await provider.terminate("s", resumed.id, None)

    used = {call.name for call in cloud.calls}
    assert used >= set(REAL_ENTRY_POINTS) | {"Image.from_id", "Image.debian_slim"}
    for call in cloud.calls:
        real = REAL_ENTRY_POINTS.get(call.name) or SYNC_ENTRY_POINTS[call.name]
        bind(real, call.args, call.kwargs)
        if call.name in REAL_ENTRY_POINTS:
            assert hasattr(real, "aio"), f"{call.name} has no .aio in modal {modal.__version__}"


async def test_the_fake_rejects_what_the_sdk_rejects(cloud: FakeModalCloud) -> None:
    fake = FakeModal(cloud)
    app = await fake.App.lookup.aio("a", create_if_missing=True)

    with pytest.raises(TypeError, match="ports"):
        await fake.Sandbox.create.aio(app=app, ports=[8000])  # renamed to encrypted_ports
    with pytest.raises(TypeError, match="environment"):
        await fake.App.lookup.aio("a", environment="dev")
    with pytest.raises(TypeError):
        fake.Sandbox.list.aio(app.app_id)  # keyword-only
    sb = await fake.Sandbox.create.aio(app=app, timeout=60)
    with pytest.raises(TypeError, match="cwd"):
        await sb.exec.aio("ls", cwd="/workspace")
    with pytest.raises(TypeError):
        await sb.filesystem.write_bytes.aio("/workspace/a.txt")  # data first, then the path
    with pytest.raises(TypeError):  # the SDK fails on the bytes "path" first, as the fake does
        await sb.filesystem.write_bytes.aio("/workspace/a.txt", b"swapped")
    with pytest.raises(mexc.InvalidError, match="absolute"):
        await sb.filesystem.read_bytes.aio("workspace/a.txt")
    with pytest.raises(mexc.InvalidError, match="absolute"):
        await sb.exec.aio("ls", workdir="workspace")
    with pytest.raises(AssertionError, match="blocking"):
        fake.Sandbox.create(app=app)
    with pytest.raises(AssertionError, match="blocking"):
        sb.exec("ls")
    with pytest.raises(AssertionError, match="deprecated"):
        fake.Image.from_id.aio("im-1")


async def test_the_sdk_validates_locally_what_the_provider_guards_against() -> None:
    """These fail in the SDK before any network call; the provider never triggers them."""
    with pytest.raises(mexc.InvalidError, match="workdir must be an absolute path"):
        await modal.Sandbox.create.aio(timeout=60, workdir="workspace")
    with pytest.raises(mexc.InvalidError, match="timeout=None"):
        await modal.Sandbox.create.aio(timeout=None, workdir="/workspace")
    with pytest.raises(mexc.InvalidError, match="require an App"):
        await modal.Sandbox.create.aio(timeout=60, workdir="/workspace")
    with pytest.raises(ValueError, match="App has not been initialized"):
        await modal.Sandbox.create.aio(app=modal.App("never-deployed"), timeout=60)
    with pytest.raises(mexc.InvalidError, match="must be strings"):
        modal.Image.debian_slim().env({"N": 1})  # type: ignore[dict-item]


def test_the_sdk_surface_the_provider_relies_on() -> None:
    assert modal.__version__.startswith("1.6.")
    for legacy in ("open", "ls", "mkdir", "rm", "watch"):
        assert not hasattr(modal.Sandbox, legacy), (
            f"Sandbox.{legacy} is back: the provider ignores it"
        )
    assert not hasattr(ContainerProcess, "terminate") and not hasattr(ContainerProcess, "kill")
    image = modal.Image.from_id("im-123")  # sync and lazy: no network
    assert image.object_id == "im-123"
    generator = modal.Sandbox.list.aio(app_id="ap-123")
    assert inspect.isasyncgen(generator)  # iterated, not awaited
    for name in (
        "SandboxFilesystemNotFoundError",
        "SandboxFilesystemIsADirectoryError",
        "ImageBuildError",
    ):
        assert issubclass(getattr(mexc, name), mexc.Error)


async def test_the_sandbox_list_generator_is_closed_cleanly() -> None:
    generator = modal.Sandbox.list.aio(app_id="ap-123")
    await generator.aclose()


async def test_no_credentials_is_an_actionable_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real SDK raises AuthError locally when no token is configured."""
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.setenv(name, "")
    monkeypatch.setattr(modal.client._Client, "_client_from_env", None)
    provider = ModalSandboxProvider(Settings(modal_app_name="agent-tui-test"))

    with pytest.raises(SandboxError) as caught:
        await provider.create("s")

    assert caught.value.status == 502
    assert caught.value.message.startswith(
        "Modal authentication failed: set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET"
    )
    assert "authentication failed" in (await provider.logs("s", None, 5))[-1]


def test_the_image_recipe_builds_with_the_sdk_and_the_fake(tmp_path: Path) -> None:
    real = sandbox_app.build_image(modal)
    assert isinstance(real, modal.Image)  # lazy: built by deploy or on first create

    cloud = FakeModalCloud(tmp_path)
    fake = sandbox_app.build_image(FakeModal(cloud))
    assert [c.name for c in cloud.calls] == [
        "Image.debian_slim",
        "Image.apt_install",
        "Image.run_commands",
        "Image.env",
        "Image.workdir",
    ]
    for call in cloud.calls:
        bind(SYNC_ENTRY_POINTS[call.name], call.args, call.kwargs)
    assert {"git", "curl", "ripgrep"} <= set(cloud.calls[1].args)
    assert fake.env_vars["GIT_TERMINAL_PROMPT"] == "0"


def test_the_image_installs_the_pinned_opencode(tmp_path: Path) -> None:
    """The version comes from backend/agent/opencode/binary.py, its one place."""
    assert sandbox_app.OPENCODE_VERSION == OPENCODE_VERSION
    cloud = FakeModalCloud(tmp_path)
    sandbox_app.build_image(FakeModal(cloud))
    [commands] = cloud.calls_to("Image.run_commands")
    assert f"npm install -g opencode-ai@{OPENCODE_VERSION} && opencode --version" in commands.args


async def test_the_fake_builds_only_the_opencode_version_it_has(tmp_path: Path) -> None:
    cloud = FakeModalCloud(tmp_path)
    cloud.npm_packages["opencode-ai"] = ("0.0.1", "opencode", Path("/bin/true"))
    provider = ModalSandboxProvider(Settings(), modal_module=FakeModal(cloud))
    with pytest.raises(SandboxError, match="failed to build"):
        await provider.create("s")
    cloud.npm_packages["opencode-ai"] = (OPENCODE_VERSION, "opencode", Path("/bin/true"))
    sandbox = await provider.create("s")
    # How the engine starts it: bash -c (not a login shell), the image's PATH.
    code, out, _ = await sandbox.run_helper(
        "bash", "-c", "command -v opencode && opencode", timeout=30
    )
    assert (code, out) == (0, b"/usr/local/bin/opencode\n")
    await cloud.shutdown()


def test_the_deployable_app_builds_the_image_through_a_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert sandbox_app.app.name == "agent-tui-sandbox"
    assert isinstance(sandbox_app.health, modal.Function)
    # No public accessor for a Function's image in 1.6.4 (App.registered_functions is
    # deprecated): this is what makes `modal deploy` build the sandbox image.
    assert synchronizer._translate_out(sandbox_app.health._spec_.image) is sandbox_app.image
    monkeypatch.setenv("MODAL_APP_NAME", "my-sandboxes")
    try:
        assert importlib.reload(sandbox_app).app.name == "my-sandboxes"
    finally:
        monkeypatch.delenv("MODAL_APP_NAME")
        importlib.reload(sandbox_app)
