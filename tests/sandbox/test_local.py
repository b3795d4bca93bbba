"""The local sandbox provider: lifecycle, commands, isolation and clean-up.

Tests that involve bubblewrap run once per isolation mode; the bwrap run skips
when bubblewrap cannot be used here (and fails under CI=true).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox import local as local_module
from sandbox.base import ExecResult, Sandbox, SandboxError, SandboxProvider, SnapshotLost
from sandbox.local import BwrapUnavailable, LocalSandbox, LocalSandboxProvider, bwrap_available
from sandbox.local_process import OutputCapture
from tests.conftest import require

SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-secret-value",
    "DATABASE_URL": "postgresql://user:pw@db/agent",
    "UPSTASH_REDIS_REST_TOKEN": "upstash-secret-value",
    "MODAL_TOKEN_SECRET": "modal-secret-value",
    "GITHUB_TOKEN": "ghp_secretvalue",
}


def require_bwrap() -> None:
    require(
        bwrap_available(), "bubblewrap (bwrap) is not installed or cannot create a sandbox here"
    )


def make_provider(root: Path, isolation: str, **kwargs: object) -> LocalSandboxProvider:
    if isolation == "bwrap":
        require_bwrap()
    return LocalSandboxProvider(root / "sandboxes", isolation=isolation, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["none", "bwrap"])
async def provider(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LocalSandboxProvider]:
    p = make_provider(tmp_path, request.param)
    yield p
    await p.close()


@pytest.fixture
async def plain(tmp_path: Path) -> AsyncIterator[LocalSandboxProvider]:
    """A provider without bubblewrap, for what does not depend on isolation."""
    p = make_provider(tmp_path, "none")
    yield p
    await p.close()


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` or below."""
    prefix = str(directory.resolve())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and (cwd == prefix or cwd.startswith(prefix + "/")):
            found.append(int(entry))
    return found


# Appended to the sleeps' durations the tests look for: the other pytest-xdist
# worker may run the same test (another parametrization) at the same time.
RUN = f"{os.getpid():07d}"


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and marker in cmdline:
            found.append(int(entry))
    return found


async def run(sandbox: LocalSandbox, command: str, seconds: float = 10) -> ExecResult:
    return await sandbox.exec(command, timeout=seconds)


# ---------------------------------------------------------------- construction


def test_isolation_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert LocalSandboxProvider(tmp_path / "a", isolation="none").isolation == "none"
    auto = LocalSandboxProvider(tmp_path / "b")
    assert auto.isolation == ("bwrap" if bwrap_available() else "none")
    with pytest.raises(ValueError):
        LocalSandboxProvider(tmp_path / "c", isolation="docker")
    monkeypatch.setattr(local_module.shutil, "which", lambda name: None)
    assert LocalSandboxProvider(tmp_path / "d").isolation == "none"
    with pytest.raises(BwrapUnavailable, match="not installed"):
        LocalSandboxProvider(tmp_path / "e", isolation="bwrap")


def test_bwrap_isolation_when_available(tmp_path: Path) -> None:
    require_bwrap()
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="bwrap")
    assert provider.isolation == "bwrap"
    assert provider.name == "local"
    assert isinstance(provider, SandboxProvider)
    assert (tmp_path / "sandboxes").stat().st_mode & 0o777 == 0o700


async def test_create_makes_an_empty_workspace(provider: LocalSandboxProvider) -> None:
    progress: list[str] = []

    async def on_progress(line: str) -> None:
        progress.append(line)

    sandbox = await provider.create("session-1", on_progress=on_progress)
    assert isinstance(sandbox, Sandbox)
    assert sandbox.id.startswith("local-") and len(sandbox.id) == len("local-") + 12
    assert progress == ["creating sandbox"]
    assert sandbox.workspace.is_dir() and not any(sandbox.workspace.iterdir())
    assert await sandbox.is_alive()
    other = await provider.create("session-2")
    assert other.id != sandbox.id and other.workspace != sandbox.workspace


async def test_create_refuses_unsafe_session_ids(plain: LocalSandboxProvider) -> None:
    for bad in ("../x", "a/b", "", ".hidden"):
        with pytest.raises(SandboxError):
            await plain.create(bad)


async def test_create_is_fast(plain: LocalSandboxProvider) -> None:
    times = []
    for i in range(15):
        started = time.perf_counter()
        await plain.create(f"fast-{i}")
        times.append(time.perf_counter() - started)
    assert sorted(times)[len(times) // 2] < 0.1


# ---------------------------------------------------------------- exec


async def test_exec_output_exit_code_and_cwd(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    result = await run(sandbox, "echo out; echo err >&2; pwd; exit 3")
    assert result.exit_code == 3
    assert result.stdout == f"out\n{sandbox.workspace}\n"
    assert result.stderr == "err\n"
    assert not result.timed_out and not result.truncated
    killed = await run(sandbox, "kill -9 $$")
    assert killed.exit_code == 137


async def test_exec_environment_is_built_from_scratch(
    provider: LocalSandboxProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    sandbox = await provider.create("s")
    result = await run(sandbox, "env")
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    for name, value in SECRETS.items():
        assert name not in env
        assert value not in result.stdout
    assert env["HOME"] == str(sandbox.workspace)
    assert env["LANG"] == "C.UTF-8"
    assert env["TERM"] == "dumb"
    assert env["USER"]
    assert env["PATH"]
    assert not any(
        name.startswith(("UPSTASH_", "MODAL_", "ANTHROPIC_", "VIRTUAL_ENV")) for name in env
    )


async def test_exec_streams_output_as_it_arrives(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    chunks: list[tuple[str, str, float]] = []

    async def on_output(stream: str, text: str) -> None:
        chunks.append((stream, text, time.monotonic()))

    result = await sandbox.exec(
        "echo first; sleep 0.5; echo second >&2", timeout=10, on_output=on_output
    )
    ended = time.monotonic()
    assert result.stdout == "first\n" and result.stderr == "second\n"
    assert chunks[0][:2] == ("stdout", "first\n")
    assert ended - chunks[0][2] > 0.4  # it came while the command still ran
    assert ("stderr", "second\n") in [c[:2] for c in chunks]


async def test_exec_decodes_utf8_split_across_writes(plain: LocalSandboxProvider) -> None:
    sandbox = await plain.create("s")
    texts: list[str] = []

    async def on_output(stream: str, text: str) -> None:
        texts.append(text)

    result = await sandbox.exec(
        r"printf '\xe2\x82'; sleep 0.2; printf '\xac ok \xff\n'", timeout=10, on_output=on_output
    )
    assert "".join(texts) == "€ ok \ufffd\n"
    assert result.stdout == "€ ok \ufffd\n"


async def test_exec_keeps_head_and_tail_of_long_output(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    result = await sandbox.exec(
        "echo START; head -c 100000 /dev/zero | tr '\\0' x; echo; echo END",
        timeout=10,
        max_output_bytes=1000,
    )
    assert result.truncated
    assert result.stdout.startswith("START\n")
    assert result.stdout.endswith("\nEND\n")
    total = len("START\n") + 100000 + len("\nEND\n")
    assert f"\n[... {total - 1000} bytes truncated ...]\n" in result.stdout
    assert result.stderr == ""


def test_output_capture_cuts_on_character_boundaries() -> None:
    capture = OutputCapture(11)
    data = "é" * 20  # 40 bytes, 2 per character
    capture.add(data.encode()[:7])
    capture.add(data.encode()[7:])
    text = capture.text()
    head, note, tail = text.partition("\n[... ")
    assert "\ufffd" not in text
    assert head == "ééé"  # 6 bytes kept of the 6-byte head
    assert tail == "30 bytes truncated ...]\néé"  # 5-byte tail, cut to 4
    assert note
    small = OutputCapture(100)
    small.add(b"hello")
    assert small.text() == "hello" and not small.truncated


async def test_exec_timeout_kills_the_process_group(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    started = time.monotonic()
    result = await sandbox.exec(f"echo before; sleep 301.25{RUN} & sleep 301.25{RUN}", timeout=0.5)
    assert time.monotonic() - started < 3
    assert result.exit_code == -1 and result.timed_out
    assert result.stdout == "before\n"
    assert processes_with(f"301.25{RUN}") == []
    assert processes_in(sandbox.workspace) == []


async def test_cancel_leaves_no_process_behind(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    started = asyncio.Event()

    async def on_output(stream: str, text: str) -> None:
        started.set()

    task = asyncio.create_task(
        sandbox.exec(
            f"echo go; sleep 300.75{RUN} & sleep 300.75{RUN}", timeout=60, on_output=on_output
        )
    )
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.1)  # let the second sleep start too
    assert len(processes_in(sandbox.workspace)) >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert processes_in(sandbox.workspace) == []
    assert processes_with(f"300.75{RUN}") == []
    assert "interrupted" in (await provider.logs("s", sandbox.id, 10))[-1]


async def test_failing_output_callback_kills_the_command(plain: LocalSandboxProvider) -> None:
    sandbox = await plain.create("s")

    async def on_output(stream: str, text: str) -> None:
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError, match="client went away"):
        await sandbox.exec(f"echo go; sleep 302.5{RUN}", timeout=30, on_output=on_output)
    assert processes_with(f"302.5{RUN}") == []


async def test_setsid_jobs_are_killed_on_terminate(plain: LocalSandboxProvider) -> None:
    # Without bwrap a job can leave the process group; terminate still finds it.
    sandbox = await plain.create("s")
    result = await run(sandbox, f"setsid sleep 303.5{RUN} > /dev/null 2>&1 < /dev/null &")
    assert result.exit_code == 0
    await asyncio.sleep(0.1)
    assert processes_with(f"303.5{RUN}")
    await plain.terminate("s", sandbox.id, None)
    assert processes_with(f"303.5{RUN}") == []


# ---------------------------------------------------------------- bwrap jail


async def test_bwrap_jail(tmp_path: Path) -> None:
    provider = make_provider(tmp_path, "bwrap")
    try:
        mine = await provider.create("mine")
        other = await provider.create("other")
        await other.write_file("secret.txt", b"other session")
        host_tmp = tmp_path / "host-file"
        host_tmp.write_text("host")
        private_tmp = Path("/tmp") / f"agent-tui-test-{uuid.uuid4().hex}"  # the host's /tmp
        result = await run(
            mine,
            f"""
            touch /usr/agent-tui-test 2>/dev/null && echo usr-writable
            touch ./mine.txt && echo workspace-writable
            touch {private_tmp} && echo tmp-writable
            test -e {host_tmp} && echo host-tmp-visible
            test -e {other.workspace}/secret.txt && echo other-visible
            test -e {Path.home()}/. && ls -A {Path.home()} | head -3 | sed 's/^/home: /'
            grep CapEff /proc/self/status
            ls /proc | grep -c '^[0-9]'
            """,
        )
        lines = result.stdout.splitlines()
        assert "usr-writable" not in lines
        assert "workspace-writable" in lines
        assert "tmp-writable" in lines
        assert "host-tmp-visible" not in lines
        assert "other-visible" not in lines
        assert not any(line.startswith("home: ") for line in lines)
        assert "CapEff:\t0000000000000000" in lines
        assert int(lines[-1]) < 10  # its own PID namespace
        assert (mine.workspace / "mine.txt").exists()
        assert not private_tmp.exists()  # the sandbox's /tmp is its own
    finally:
        await provider.close()


async def test_bwrap_background_jobs_end_with_the_command(tmp_path: Path) -> None:
    provider = make_provider(tmp_path, "bwrap")
    try:
        sandbox = await provider.create("s")
        result = await run(sandbox, f"sleep 304.5{RUN} & echo started")
        assert result.stdout == "started\n"
        await asyncio.sleep(0.1)
        assert processes_with(f"304.5{RUN}") == []
    finally:
        await provider.close()


# ---------------------------------------------------------------- pause, resume, attach


async def test_pause_and_resume(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    await sandbox.write_file("notes/a.txt", b"kept")
    workspace = sandbox.workspace
    running = asyncio.create_task(sandbox.exec(f"sleep 305.5{RUN}", timeout=60))
    await asyncio.sleep(0.2)

    snapshot_id = await provider.pause(sandbox)
    assert snapshot_id.startswith("snap-")
    finished = await asyncio.wait_for(running, 5)  # pause killed it
    assert finished.exit_code != 0
    assert processes_with(f"305.5{RUN}") == []
    assert not await sandbox.is_alive()
    with pytest.raises(SandboxError):
        await sandbox.exec("true", timeout=5)
    assert not workspace.exists()
    assert (
        provider.root / "snapshots" / "s" / snapshot_id / "notes" / "a.txt"
    ).read_bytes() == b"kept"
    assert await provider.attach("s", sandbox.id) is None

    resumed = await provider.resume("s", snapshot_id)
    assert resumed.id != sandbox.id and resumed.id.startswith("local-")
    assert resumed.workspace == workspace  # same path: absolute paths inside survive
    assert await resumed.read_file("notes/a.txt") == b"kept"
    assert (await run(resumed, "cat notes/a.txt")).stdout == "kept"
    assert not (provider.root / "snapshots" / "s").exists()
    with pytest.raises(SnapshotLost):
        await provider.resume("s", "snap-000000000000")


async def test_resume_of_a_lost_snapshot(plain: LocalSandboxProvider) -> None:
    sandbox = await plain.create("s")
    snapshot_id = await plain.pause(sandbox)
    import shutil

    shutil.rmtree(plain.root / "snapshots" / "s" / snapshot_id)
    with pytest.raises(SnapshotLost):
        await plain.resume("s", snapshot_id)
    with pytest.raises(SnapshotLost):
        await plain.resume("s", "../etc")


async def test_resume_again_after_a_crash_finds_the_workspace(tmp_path: Path) -> None:
    # The resume moved the snapshot back but the caller never recorded it.
    first = make_provider(tmp_path, "none")
    sandbox = await first.create("s")
    await sandbox.write_file("f", b"1")
    snapshot_id = await first.pause(sandbox)
    await first.resume("s", snapshot_id)
    restarted = make_provider(tmp_path, "none")
    again = await restarted.resume("s", snapshot_id)
    assert await again.read_file("f") == b"1"
    with pytest.raises(SnapshotLost):
        await restarted.resume("s", "snap-111111111111")


async def test_attach_after_restart(tmp_path: Path) -> None:
    first = make_provider(tmp_path, "none")
    sandbox = await first.create("s")
    await sandbox.write_file("f", b"x")
    assert await first.attach("s", sandbox.id) is sandbox
    await first.close()

    restarted = make_provider(tmp_path, "none")
    attached = await restarted.attach("s", sandbox.id)
    assert attached is not None and attached.id == sandbox.id
    assert await attached.read_file("f") == b"x"
    assert (await run(attached, "cat f")).stdout == "x"
    assert await restarted.attach("s", "local-000000000000") is None
    assert await restarted.attach("nobody", sandbox.id) is None
    assert await restarted.attach("../s", sandbox.id) is None
    await restarted.terminate("s", sandbox.id, None)
    assert await restarted.attach("s", sandbox.id) is None


async def test_pause_refuses_a_stopped_or_foreign_sandbox(plain: LocalSandboxProvider) -> None:
    sandbox = await plain.create("s")
    await plain.pause(sandbox)
    with pytest.raises(SandboxError):
        await plain.pause(sandbox)
    with pytest.raises(SandboxError):
        await plain.pause(object())  # type: ignore[arg-type]


async def test_terminate_deletes_everything_and_is_idempotent(
    provider: LocalSandboxProvider,
) -> None:
    sandbox = await provider.create("s")
    await sandbox.write_file("f", b"x")
    snapshot_id = await provider.pause(sandbox)
    resumed = await provider.resume("s", snapshot_id)
    await run(resumed, "echo hi")
    second_snapshot = await provider.pause(resumed)
    await provider.terminate("s", resumed.id, second_snapshot)
    assert not (provider.root / "live" / "s").exists()
    assert not (provider.root / "snapshots" / "s").exists()
    await provider.terminate("s", resumed.id, second_snapshot)
    await provider.terminate("never-existed", None, None)
    await provider.terminate("../x", None, None)


async def test_terminate_kills_running_commands(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    running = asyncio.create_task(sandbox.exec(f"sleep 306.5{RUN}", timeout=60))
    await asyncio.sleep(0.2)
    await provider.terminate("s", sandbox.id, None)
    await asyncio.wait_for(running, 5)
    assert processes_with(f"306.5{RUN}") == []
    assert not sandbox.workspace.exists()
    assert not await sandbox.is_alive()


async def test_close_kills_running_commands(provider: LocalSandboxProvider) -> None:
    sandbox = await provider.create("s")
    running = asyncio.create_task(sandbox.exec(f"sleep 307.5{RUN}", timeout=60))
    await asyncio.sleep(0.2)
    await provider.close()
    await asyncio.wait_for(running, 5)
    assert processes_with(f"307.5{RUN}") == []
    assert sandbox.workspace.exists()  # kept for attach after a restart


async def test_workspace_removed_under_the_sandbox(plain: LocalSandboxProvider) -> None:
    import shutil

    sandbox = await plain.create("s")
    shutil.rmtree(sandbox.workspace)
    assert not await sandbox.is_alive()
    with pytest.raises(SandboxError):
        await sandbox.exec("true", timeout=5)


# ---------------------------------------------------------------- sweep and logs


async def test_sweep_deletes_what_belongs_to_no_session(plain: LocalSandboxProvider) -> None:
    keep = await plain.create("keep")
    gone = await plain.create("gone")
    paused = await plain.create("paused-gone")
    await plain.pause(paused)
    kept_paused = await plain.create("paused-keep")
    kept_snapshot = await plain.pause(kept_paused)
    running = asyncio.create_task(gone.exec(f"sleep 308.5{RUN}", timeout=60))
    await asyncio.sleep(0.2)

    assert await plain.sweep({"keep", "paused-keep"}) == 2
    await asyncio.wait_for(running, 5)
    assert processes_with(f"308.5{RUN}") == []
    assert keep.workspace.exists()
    assert not gone.workspace.exists()
    assert sorted(os.listdir(plain.root / "live")) == ["keep"]
    assert os.listdir(plain.root / "snapshots") == ["paused-keep"]
    assert await plain.resume("paused-keep", kept_snapshot)
    assert await plain.sweep({"keep", "paused-keep"}) == 0


async def test_logs_record_commands_bounded(tmp_path: Path) -> None:
    provider = make_provider(tmp_path, "none", log_limit=5)
    sandbox = await provider.create("s")
    await run(sandbox, "exit 4")
    await sandbox.exec("sleep 5", timeout=0.2)
    lines = await provider.logs("s", sandbox.id, 100)
    assert "created" in lines[0]
    assert any("exit 4" in line and ": exit 4" in line for line in lines)
    assert "timed out" in lines[-1] and sandbox.id in lines[-1]
    for i in range(10):
        await run(sandbox, f"echo {i}")
    lines = await provider.logs("s", sandbox.id, 100)
    assert len(lines) == 5 and lines[-1].endswith("echo 9")
    assert len(await provider.logs("s", sandbox.id, 2)) == 2
    assert await provider.logs("s", sandbox.id, 0) == []
    assert await provider.logs("unknown", None, 10) == []
