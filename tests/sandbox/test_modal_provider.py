"""The Modal provider driven through whole sessions against the signature-checked fake.

The fake runs commands with the host's bash in a per-sandbox directory, so
exec, timeouts and kills are real processes; see ``tests/fakes/fake_modal.py``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import modal.exception as mexc
import pytest

from backend.errors import FileNotFound, SandboxError, SandboxPathError, ValidationError
from backend.settings import Settings
from sandbox import modal_provider
from sandbox.base import IsADirectory, NotADirectory, Sandbox, SandboxProvider, SnapshotLost
from sandbox.modal_provider import ModalSandbox, ModalSandboxProvider
from tests.fakes.fake_modal import FakeApp, FakeModal, FakeModalCloud

SETTINGS = Settings(
    modal_app_name="agent-tui-test",
    modal_environment="test-env",
    modal_cpu=2.0,
    modal_memory_mib=4096,
    modal_timeout_seconds=7200,
    modal_idle_timeout_seconds=600,
)
TOKEN = "ghp_TESTTOKENabcdef0123456789SECRET"
TOKEN_FORMS = [TOKEN, base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[FakeModalCloud]:
    fake = FakeModalCloud(tmp_path / "modal")
    yield fake
    await fake.shutdown()


@pytest.fixture
def provider(cloud: FakeModalCloud) -> ModalSandboxProvider:
    return ModalSandboxProvider(SETTINGS, modal_module=FakeModal(cloud))


def host_path(cloud: FakeModalCloud, sandbox: ModalSandbox, path: str) -> Path:
    return cloud.sandboxes[sandbox.id].root / path.lstrip("/")


def is_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.split()[1:2] == ["Z"] for line in status if line.startswith("State:"))
    except FileNotFoundError:
        return True


async def wait_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if is_gone(pid):
            return True
        await asyncio.sleep(0.05)
    return is_gone(pid)


def read_if_present(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


async def wait_for_file(path: Path, seconds: float = 5.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text := read_if_present(path):
            return text
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def git_config_get(key: str, env: dict[str, str]) -> str:
    """What the host's git reads for ``key`` from an environment holding only ``env``."""
    done = subprocess.run(
        ["git", "config", "--get", key],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(path: Path) -> Path:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    path.mkdir(parents=True)
    (path / "README.md").write_text("# app\n")
    (path / "src").mkdir()
    (path / "src" / "main.py").write_text("print('hello')\n# TODO: more\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


# ---------------------------------------------------------------------- create


async def test_create_passes_settings_to_modal(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    progress: list[str] = []

    async def on_progress(message: str) -> None:
        progress.append(message)

    sandbox = await provider.create("session-1", on_progress=on_progress)
    await provider.create("session-2")

    assert isinstance(provider, SandboxProvider) and isinstance(sandbox, Sandbox)
    assert (provider.name, provider.isolation) == ("modal", "modal")
    assert progress == ["creating sandbox"]
    assert sandbox.id.startswith("sb-")
    [lookup] = cloud.calls_to("App.lookup")  # looked up once, then cached
    assert lookup.args == ("agent-tui-test",)
    assert lookup.kwargs == {"environment_name": "test-env", "create_if_missing": True}
    create = cloud.calls_to("Sandbox.create")[0].kwargs
    assert isinstance(create["app"], FakeApp) and create["app"].name == "agent-tui-test"
    assert create["image"].recipe[0] == "debian_slim(3.12)"
    assert create["tags"] == {"agent-tui-session": "session-1", "managed-by": "agent-tui"}
    assert (create["timeout"], create["idle_timeout"], create["workdir"]) == (
        7200,
        600,
        "/workspace",
    )
    assert (create["cpu"], create["memory"]) == (2.0, 4096)
    assert "env" not in create and "secrets" not in create
    assert host_path(cloud, sandbox, "/var/lib/agent-tui/session-id").read_text() == "session-1"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            mexc.AuthError("Token missing"),
            "Modal authentication failed: set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET",
        ),
        (
            mexc.NotFoundError("Environment 'test-env' not found"),
            "Modal app 'agent-tui-test' not found in test-env",
        ),
        (mexc.PermissionDeniedError("no"), "Modal denied access"),
        (mexc.ConnectionError("refused"), "Could not reach Modal while looking up the Modal app"),
    ],
)
async def test_app_lookup_errors_are_actionable(
    provider: ModalSandboxProvider, cloud: FakeModalCloud, error: Exception, expected: str
) -> None:
    cloud.lookup_error = error
    with pytest.raises(SandboxError) as caught:
        await provider.create("s")
    assert caught.value.status == 502 and caught.value.code == "SANDBOX_ERROR"
    assert expected in caught.value.message
    assert any("error: " in line for line in await provider.logs("s", None, 10))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (mexc.ResourceExhaustedError("too many sandboxes"), "Modal quota or rate limit reached"),
        (mexc.ImageBuildError("apt failed", "im-1"), "run `modal deploy sandbox/sandbox.py`"),
        (
            mexc.InvalidError("bad cpu"),
            "Modal rejected the request while creating the sandbox: bad cpu",
        ),
        (RuntimeError("boom"), "Modal failed while creating the sandbox: RuntimeError"),
    ],
)
async def test_create_errors_are_sandbox_errors(
    provider: ModalSandboxProvider, cloud: FakeModalCloud, error: Exception, expected: str
) -> None:
    cloud.create_error = error
    with pytest.raises(SandboxError) as caught:
        await provider.create("s")
    assert expected in caught.value.message


# ---------------------------------------------------------------------- exec


async def test_exec_streams_output_and_reports_exit_code(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    seen: list[tuple[str, str]] = []

    async def on_output(stream: str, text: str) -> None:
        seen.append((stream, text))

    result = await sandbox.exec(
        "echo out; echo err >&2; pwd; exit 3", timeout=10, on_output=on_output
    )

    assert (result.exit_code, result.timed_out, result.truncated) == (3, False, False)
    assert result.stdout == "out\n/workspace\n" and result.stderr == "err\n"
    assert "".join(t for s, t in seen if s == "stdout") == result.stdout
    assert "".join(t for s, t in seen if s == "stderr") == result.stderr
    call = cloud.calls_to("Sandbox.exec")[-1]
    assert call.args[:2] == ("bash", "-c") and call.args[-2:] == (
        "echo out; echo err >&2; pwd; exit 3",
        "bash",
    )
    assert call.kwargs["workdir"] == "/workspace" and call.kwargs["text"] is False
    assert (
        call.kwargs["timeout"] >= 10 and "env" not in call.kwargs and "secrets" not in call.kwargs
    )
    assert any("exec exit=3" in line for line in await provider.logs("s", sandbox.id, 5))


async def test_exec_runs_tools_like_commands(provider: ModalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    await sandbox.write_file("src/app.py", b"def main():\n    pass  # TODO\n")
    await sandbox.write_file("README.md", "h\u00e9llo\n".encode())

    listing = await sandbox.exec("ls -1 && ls -1 src", timeout=10)
    grep = await sandbox.exec("grep -rn TODO . | sort", timeout=10)
    cat = await sandbox.exec("cat README.md && wc -l < src/app.py", timeout=10)
    missing = await sandbox.exec("cat nope.txt", timeout=10)
    edit = await sandbox.exec(
        "sed -i 's/pass/return 1/' src/app.py && python3 -c 'print(2 + 2)'", timeout=10
    )

    assert listing.stdout == "README.md\nsrc\napp.py\n"
    assert grep.stdout == "./src/app.py:2:    pass  # TODO\n"
    assert cat.stdout == "h\u00e9llo\n2\n"
    assert missing.exit_code == 1 and "nope.txt" in missing.stderr
    assert edit.stdout == "4\n" and b"return 1" in await sandbox.read_file("src/app.py")


async def test_exec_keeps_head_and_tail_of_long_output(provider: ModalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    streamed: list[str] = []

    async def on_output(stream: str, text: str) -> None:
        streamed.append(text)

    command = "head -c 6000 /dev/zero | tr '\\0' a; head -c 6000 /dev/zero | tr '\\0' b"
    result = await sandbox.exec(command, timeout=10, on_output=on_output, max_output_bytes=1000)

    assert result.truncated and result.exit_code == 0
    assert result.stdout.startswith("a" * 500 + "\n[... 11000 bytes truncated ...]\n")
    assert result.stdout.endswith("\n" + "b" * 500)
    assert len("".join(streamed)) == 12000  # the live stream is never cut


async def test_exec_timeout_kills_the_process_group(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    started = time.monotonic()

    result = await sandbox.exec(
        "sleep 30 & echo $! > bg.pid; echo $$ > main.pid; echo begun; sleep 30", timeout=0.5
    )

    assert result.timed_out and result.exit_code == -1 and result.stdout == "begun\n"
    assert time.monotonic() - started < 5
    for name in ("main.pid", "bg.pid"):
        assert await wait_gone(int(host_path(cloud, sandbox, f"/workspace/{name}").read_text()))
    assert any("timed out after 0.5s" in line for line in await provider.logs("s", None, 5))


async def test_cancelling_exec_kills_the_command(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    task = asyncio.create_task(
        sandbox.exec("echo $$ > main.pid; sleep 30 & echo $! > bg.pid; wait", timeout=60)
    )
    await wait_for_file(host_path(cloud, sandbox, "/workspace/bg.pid"))
    main_pid = int(await wait_for_file(host_path(cloud, sandbox, "/workspace/main.pid")))
    bg_pid = int(host_path(cloud, sandbox, "/workspace/bg.pid").read_text())

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await wait_gone(main_pid) and await wait_gone(bg_pid)
    assert "agent-kill" in cloud.calls_to("Sandbox.exec")[-1].args
    assert any("exec interrupted" in line for line in await provider.logs("s", None, 5))


async def test_cancelling_while_modal_starts_the_command_still_kills_it(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    cloud.exec_reply_delay = 2.0
    task = asyncio.create_task(sandbox.exec("echo $$ > main.pid; sleep 30", timeout=60))
    main_pid = int(await wait_for_file(host_path(cloud, sandbox, "/workspace/main.pid")))
    cloud.exec_reply_delay = 0.0

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await wait_gone(main_pid)
    assert any("interrupted while starting" in line for line in await provider.logs("s", None, 5))


async def test_a_background_child_does_not_hold_exec(
    provider: ModalSandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modal_provider, "OUTPUT_GRACE_SECONDS", 0.2)
    sandbox = await provider.create("s")
    started = time.monotonic()

    result = await sandbox.exec("sleep 3 & echo started", timeout=20)

    assert (result.exit_code, result.stdout) == (0, "started\n")
    assert time.monotonic() - started < 2.5


async def test_a_command_over_modals_argv_limit_runs_from_a_script(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    command = "x='" + "a" * 70_000 + "'; echo ${#x}"

    result = await sandbox.exec(command, timeout=10)

    assert result.stdout == "70000\n"
    assert all(sum(len(a) for a in c.args) < 2**16 for c in cloud.calls_to("Sandbox.exec"))
    assert not list(host_path(cloud, sandbox, "/tmp").glob(".agent-cmd-*"))  # cleaned up


async def test_exec_in_a_stopped_sandbox(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    assert await sandbox.is_alive()
    cloud.expire(sandbox.id)

    assert not await sandbox.is_alive()
    with pytest.raises(SandboxError, match="no longer running"):
        await sandbox.exec("true", timeout=5)
    with pytest.raises(SandboxError, match="Sandbox is unavailable"):
        await sandbox.read_file("")  # not a FileNotFound: the sandbox is gone, not the file


# ---------------------------------------------------------------------- files


async def test_files_round_trip_through_the_filesystem_api(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    await sandbox.write_file("src/pkg/mod.py", b"x = 1\n")
    await sandbox.write_file("b.txt", b"\x00\xffbinary")
    await sandbox.write_file("a.txt", b"")

    assert await sandbox.read_file("src/pkg/mod.py") == b"x = 1\n"
    assert await sandbox.read_file("./b.txt") == b"\x00\xffbinary"
    root = await sandbox.list_dir("")
    assert [(e.name, e.path, e.is_directory) for e in root] == [
        ("a.txt", "a.txt", False),
        ("b.txt", "b.txt", False),
        ("src", "src", True),
    ]
    [module] = await sandbox.list_dir("src/pkg/")
    assert (module.name, module.path, module.size, module.is_directory) == (
        "mod.py",
        "src/pkg/mod.py",
        6,
        False,
    )
    for name in ("filesystem.read_bytes", "filesystem.write_bytes", "filesystem.list_files"):
        assert all(
            str(c.args[-1] if name.endswith("write_bytes") else c.args[0]).startswith("/")
            for c in cloud.calls_to(name)
        )
    assert cloud.calls_to("filesystem.write_bytes")[-1].args == (b"", "/workspace/a.txt")


async def test_file_errors_map_to_the_contract(provider: ModalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    await sandbox.write_file("src/a.py", b"")

    with pytest.raises(FileNotFound):
        await sandbox.read_file("missing.txt")
    with pytest.raises(FileNotFound):
        await sandbox.list_dir("nope/")
    with pytest.raises(IsADirectory):
        await sandbox.read_file("src")
    with pytest.raises(NotADirectory):
        await sandbox.list_dir("src/a.py")
    with pytest.raises(IsADirectory):
        await sandbox.write_file("", b"x")
    for bad in ("../etc/passwd", "/etc/passwd", "src/../../x"):
        with pytest.raises(SandboxPathError):
            await sandbox.read_file(bad)


async def test_symlinks_leading_out_of_the_workspace_are_refused(
    provider: ModalSandboxProvider,
) -> None:
    sandbox = await provider.create("s")
    await sandbox.write_file("src/a.py", b"inside")
    setup = await sandbox.exec("ln -s /etc abs && ln -s ../.. rel && ln -s src inside", timeout=10)
    assert setup.exit_code == 0, setup.stderr

    assert await sandbox.read_file("inside/a.py") == b"inside"
    with pytest.raises(SandboxPathError):
        await sandbox.read_file("abs/hostname")
    with pytest.raises(SandboxPathError):
        await sandbox.list_dir("rel/")
    with pytest.raises(SandboxPathError):
        await sandbox.write_file("rel/escaped.txt", b"x")


# ---------------------------------------------------------------------- pause, resume, attach


async def test_pause_and_resume_keep_the_workspace(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    await sandbox.write_file("notes.md", b"remember")
    await sandbox.exec("mkdir -p build && echo built > build/out.txt", timeout=10)

    snapshot_id = await provider.pause(sandbox)

    assert snapshot_id.startswith("im-")
    assert cloud.sandboxes[sandbox.id].returncode == 137
    snap_call = cloud.calls_to("Sandbox.snapshot_filesystem")[-1]
    assert snap_call.kwargs == {"ttl": modal_provider.SNAPSHOT_TTL_SECONDS}

    resumed = await provider.resume("s", snapshot_id)

    assert resumed.id != sandbox.id
    assert [c.args for c in cloud.calls_to("Image.from_id")] == [(snapshot_id,)]
    assert cloud.calls_to("Sandbox.create")[-1].kwargs["image"].object_id == snapshot_id
    assert cloud.calls_to("Sandbox.create")[-1].kwargs["tags"]["agent-tui-session"] == "s"
    assert await resumed.read_file("notes.md") == b"remember"
    assert (await resumed.exec("cat build/out.txt", timeout=10)).stdout == "built\n"


async def test_a_lost_snapshot_raises_snapshot_lost(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    snapshot_id = await provider.pause(sandbox)
    cloud.delete_image(snapshot_id)

    with pytest.raises(SnapshotLost) as caught:
        await provider.resume("s", snapshot_id)
    with pytest.raises(SnapshotLost):
        await provider.resume("s", "not-an-image-id")

    assert caught.value.status == 502 and snapshot_id in caught.value.message
    assert "can no longer be restored" in caught.value.message
    assert cloud.running() == []


@pytest.mark.parametrize("damage", ["other-session", "empty-image"])
async def test_a_snapshot_without_this_workspace_is_lost_not_empty(
    provider: ModalSandboxProvider, cloud: FakeModalCloud, damage: str
) -> None:
    sandbox = await provider.create("s")
    snapshot_id = await provider.pause(sandbox)
    session = "s"
    if damage == "other-session":
        session = "another"
    else:  # restored, but without what we put in it
        (cloud.base / "images" / snapshot_id / "var/lib/agent-tui/session-id").unlink()

    with pytest.raises(SnapshotLost):
        await provider.resume(session, snapshot_id)
    assert cloud.running() == []  # the sandbox made for the attempt is gone too


async def test_a_failed_snapshot_keeps_the_sandbox_running(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    sandbox = await provider.create("s")
    cloud.snapshot_error = mexc.TimeoutError("snapshot took too long")

    with pytest.raises(SandboxError, match="Modal timed out while snapshotting the sandbox"):
        await provider.pause(sandbox)
    assert await sandbox.is_alive()


async def test_attach_after_a_server_restart(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    first = await provider.create("s")
    other = await provider.create("other")
    restarted = ModalSandboxProvider(SETTINGS, modal_module=FakeModal(cloud))

    again = await restarted.attach("s", first.id)
    assert again is not None and again.id == first.id
    assert (await again.exec("echo back", timeout=5)).stdout == "back\n"
    assert await restarted.attach("s", other.id) is None  # someone else's
    assert await restarted.attach("s", "sb-doesnotexist0000000000") is None

    cloud.expire(first.id)  # Modal's timeout ended it while the server was down
    assert await restarted.attach("s", first.id) is None
    assert any("reached its timeout" in line for line in await restarted.logs("s", first.id, 10))
    assert all(c.kwargs == {} for c in cloud.calls_to("Sandbox.from_id"))


# ---------------------------------------------------------------------- terminate and sweep


async def test_terminate_is_idempotent_and_catches_duplicates(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    first = await provider.create("s")
    leaked = await provider.create("s")  # e.g. a create whose caller went away
    keep = await provider.create("other")

    await provider.terminate("s", first.id, None)
    await provider.terminate("s", first.id, None)
    await provider.terminate("s", None, "im-whatever")

    assert cloud.sandboxes[first.id].returncode == 137
    assert cloud.sandboxes[leaked.id].returncode == 137
    assert [s.object_id for s in cloud.running()] == [keep.id]
    assert all(c.kwargs.get("app_id") for c in cloud.calls_to("Sandbox.list"))


async def test_sweep_terminates_sandboxes_of_dead_sessions(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    alive = await provider.create("alive")
    await provider.create("gone-1")
    await provider.create("gone-2")
    foreign_app = await cloud.lookup("someone-elses-app", create_if_missing=True)
    foreign = await cloud.create(app=foreign_app, tags={"managed-by": "agent-tui"}, timeout=60)

    assert await provider.sweep({"alive", "paused-session"}) == 2
    assert await provider.sweep({"alive"}) == 0

    assert {s.object_id for s in cloud.running()} == {alive.id, foreign.object_id}
    [list_call, *_] = cloud.calls_to("Sandbox.list")
    assert list_call.kwargs["tags"] == {"managed-by": "agent-tui"}
    assert any("swept" in line for line in await provider.logs("gone-1", None, 5))


# ---------------------------------------------------------------------- clone and the git token


async def test_clone_with_a_token_leaves_no_trace_of_it(
    provider: ModalSandboxProvider, cloud: FakeModalCloud, tmp_path: Path
) -> None:
    cloud.repos["https://github.com/acme/app.git"] = make_repo(tmp_path / "remote")
    progress: list[str] = []

    async def on_progress(message: str) -> None:
        progress.append(message)

    sandbox = await provider.create("s", repo="acme/app", git_token=TOKEN, on_progress=on_progress)

    assert progress == ["creating sandbox", "cloning acme/app"]
    assert await sandbox.read_file("src/main.py") == b"print('hello')\n# TODO: more\n"
    log = await sandbox.exec("git log --oneline | wc -l && git status --porcelain", timeout=10)
    assert log.stdout == "1\n"
    clone = next(c for c in cloud.calls_to("Sandbox.exec") if "agent-clone" in c.args)
    assert clone.args[-2:] == ("https://github.com/acme/app.git", "/workspace")
    env = clone.kwargs["env"]
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraheader"
    assert env["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {TOKEN_FORMS[1]}"
    # git (2.39, as in Debian bookworm) reads that header from the environment
    header = git_config_get("http.https://github.com/.extraheader", env)
    assert header == env["GIT_CONFIG_VALUE_0"]

    await provider.pause(sandbox)
    stored = cloud.all_bytes()  # every sandbox and snapshot, .git/config included
    lines = "\n".join(await provider.logs("s", None, 500))
    for secret in TOKEN_FORMS:
        assert secret.encode() not in stored
        assert secret not in lines
        for call in cloud.calls:
            assert secret not in repr(call.args)
            if call is not clone:
                assert secret not in repr(call.kwargs)


async def test_a_failed_clone_is_reported_and_cleaned_up(
    provider: ModalSandboxProvider, cloud: FakeModalCloud
) -> None:
    with pytest.raises(SandboxError) as caught:
        await provider.create("s", repo="https://example.com/acme/missing.git", git_token=TOKEN)

    assert caught.value.message.startswith(
        "Cloning https://example.com/acme/missing.git failed (exit 128)"
    )
    assert TOKEN not in caught.value.message and TOKEN_FORMS[1] not in caught.value.message
    assert cloud.running() == []


@pytest.mark.parametrize(
    "repo", ["https://user:secret@github.com/a/b.git", "git@github.com:a/b.git", "ftp://x/y", "a"]
)
async def test_bad_repos_are_refused_before_any_modal_call(
    provider: ModalSandboxProvider, cloud: FakeModalCloud, repo: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        await provider.create("s", repo=repo)
    assert "secret" not in str(caught.value.body())
    assert cloud.calls == []


# ---------------------------------------------------------------------- logs


async def test_logs_are_bounded_and_tailed(
    provider: ModalSandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(modal_provider, "LOG_LINES_PER_SESSION", 3)
    sandbox = await provider.create("s")
    for i in range(4):
        await sandbox.exec(f"echo {i}", timeout=5)

    assert len(await provider.logs("s", sandbox.id, 100)) == 3
    [last] = await provider.logs("s", sandbox.id, 1)
    assert "exec exit=0" in last and last.endswith("echo 3")
    assert await provider.logs("s", sandbox.id, 0) == []
    assert await provider.logs("unknown", None, 10) == []
