"""Escapes tried as the agent would: real commands through the shell tool, against a
real bubblewrap ``LocalSandbox`` (no network, low bounds so each test is fast).

Each escape must fail inside the sandbox, say so clearly, and leave the server
(this event loop and the provider) answering. They skip without bubblewrap and
fail under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.agent.tools import Toolbox, ToolOutcome
from backend.app import open_sandbox_provider
from backend.settings import Settings
from sandbox.local import (
    DEFAULT_UID_BASE,
    LocalSandbox,
    LocalSandboxProvider,
    ResourceLimits,
    WorkspaceFull,
)
from tests.conftest import PG_HOST, PG_PORT
from tests.sandbox.test_local import processes_in, require_bwrap

LIMITS = ResourceLimits(
    max_processes=64, memory_mib=256, cpu_seconds=1, max_file_mib=16, workspace_mib=48
)


class Server:
    """What a server keeps that a sandbox must not reach."""

    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.config = root / "config"
        self.data.mkdir(parents=True)
        self.config.mkdir(parents=True)
        self.database = self.data / "agent-tui.db"
        self.database.write_text("SQLite format 3 -- the server's database")
        self.config_file = self.config / "config.json"
        self.config_file.write_text('{"anthropicApiKey": "sk-ant-config-secret"}')
        self.config_file.chmod(0o600)


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path / "server")


@pytest.fixture
async def provider(tmp_path: Path, server: Server) -> AsyncIterator[LocalSandboxProvider]:
    require_bwrap()
    p = LocalSandboxProvider(
        server.data / "sandboxes",
        isolation="bwrap",
        network=False,
        hidden_paths=[server.data, server.config],
        limits=LIMITS,
    )
    yield p
    await p.close()


@pytest.fixture
async def sandbox(provider: LocalSandboxProvider) -> LocalSandbox:
    return await provider.create("escape-session")


TOOLBOX = Toolbox(Settings(shell_timeout_seconds=30, tool_output_max_bytes=20_000))


async def shell(
    sandbox: LocalSandbox,
    command: str,
    timeout: int | None = None,  # noqa: ASYNC109 - the tool's own argument
) -> ToolOutcome:
    """The agent's shell tool, as the model would call it."""
    args: dict[str, object] = {"command": command}
    if timeout is not None:
        args["timeout"] = timeout
    return await TOOLBOX.run("shell", args, sandbox)


async def assert_still_answering(sandbox: LocalSandbox) -> None:
    """The event loop is responsive and the sandbox runs the next command."""
    started = time.monotonic()
    await asyncio.sleep(0)
    out = await shell(sandbox, "echo still-here")
    assert out.content == "still-here\n[exit code: 0]", out
    assert time.monotonic() - started < 20


async def test_no_root_and_no_host_secrets(sandbox: LocalSandbox, server: Server) -> None:
    out = await shell(
        sandbox,
        "id -u; id -g; id -un; cat /etc/shadow; cat /etc/gshadow; cat /etc/sudoers; "
        "ls /etc/ssh /etc/ssl/private /root /home; cut -d: -f1 /etc/passwd | sort | tr '\\n' ' '",
    )
    lines = out.content.splitlines()
    assert lines[0] != "0" and lines[1] != "0" and lines[2] == "agent", out
    if os.geteuid() == 0:  # a root server: the session's own host uid
        assert int(lines[0]) >= DEFAULT_UID_BASE, out
    for gone in ("/etc/shadow", "/etc/gshadow", "/etc/sudoers"):
        assert f"cat: {gone}: No such file or directory" in out.content, (gone, out.content)
    for gone in ("/etc/ssh", "/etc/ssl/private", "/root", "/home"):
        assert f"ls: cannot access '{gone}': No such file" in out.content, (gone, out.content)
    assert "agent nobody root" in out.content
    await assert_still_answering(sandbox)


async def test_server_config_and_database_are_out_of_sight(
    sandbox: LocalSandbox, server: Server
) -> None:
    out = await shell(
        sandbox,
        f"cat {server.config_file}; cat {server.database}; ls -A {server.data} {server.config}; "
        "cat /proc/1/environ | tr '\\0' '\\n'; env",
    )
    assert "sk-ant-config-secret" not in out.content
    assert "SQLite format 3" not in out.content
    assert f"{server.config_file}: No such file or directory" in out.content
    assert f"{server.database}: No such file or directory" in out.content
    # The server's data dir holds the sandboxes: only the path to this workspace is there.
    assert f"{server.data}:\nsandboxes\n" in out.content, out
    assert f"ls: cannot access '{server.config}': No such file" in out.content, out
    assert "ANTHROPIC" not in out.content and "DATABASE_URL" not in out.content


async def test_no_write_outside_the_workspace(sandbox: LocalSandbox, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    out = await shell(
        sandbox,
        f"touch /usr/x; touch /etc/x; touch /x; echo x > {outside}; touch {sandbox.workspace.parent}/x; "
        "touch inside.txt && echo inside-ok",
    )
    assert out.content.count("Read-only file system") + out.content.count("Permission denied") >= 4
    assert "inside-ok" in out.content
    assert not outside.exists() and not (sandbox.workspace.parent / "x").exists()
    # The file is the sandbox user's; the server (root) still reads and deletes it.
    made = sandbox.workspace / "inside.txt"
    assert made.stat().st_uid == sandbox.user.uid
    assert await sandbox.read_file("inside.txt") == b""


async def test_another_sessions_workspace_is_invisible(provider: LocalSandboxProvider) -> None:
    mine = await provider.create("mine")
    other = await provider.create("other")
    await other.write_file("secret.txt", b"other session's secret")
    assert mine.user.uid != other.user.uid
    out = await shell(mine, f"cat {other.workspace}/secret.txt; ls {other.workspace.parent}")
    assert "other session's secret" not in out.content
    assert "No such file or directory" in out.content


async def test_no_route_to_the_server_or_postgresql(sandbox: LocalSandbox) -> None:
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        probe = (
            'python3 -c "import socket,sys\nfor host, port in zip(sys.argv[1::2], sys.argv[2::2]):\n'
            "    s = socket.socket(); s.settimeout(2)\n"
            "    print(host, port, 'open' if s.connect_ex((host, int(port))) == 0 else 'closed')\" "
        )
        out = await shell(sandbox, probe + f"127.0.0.1 {port} {PG_HOST} {PG_PORT}")
    finally:
        listener.close()
    assert f"127.0.0.1 {port} closed" in out.content, out
    # Closed whether or not PostgreSQL runs on the host (it does on these machines).
    assert f"{PG_HOST} {PG_PORT} closed" in out.content, out


async def test_fork_bomb_is_bounded(sandbox: LocalSandbox) -> None:
    out = await shell(sandbox, "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", timeout=8)
    assert "Resource temporarily unavailable" in out.content or out.is_error, out
    assert processes_in(sandbox.workspace) == []
    await assert_still_answering(sandbox)


async def test_memory_hog_fails_with_a_clear_note(sandbox: LocalSandbox) -> None:
    out = await shell(sandbox, "python3 -c 'x = bytearray(1024 * 1024 * 1024); print(len(x))'")
    assert "MemoryError" in out.content
    assert "[sandbox] a process could not get more memory" in out.content
    assert "LOCAL_SANDBOX_MEMORY_MIB" in out.content
    await assert_still_answering(sandbox)


async def test_cpu_time_is_bounded(sandbox: LocalSandbox) -> None:
    out = await shell(sandbox, "python3 -c 'while True: pass'", timeout=25)
    assert not out.is_error, out  # stopped by the bound, long before the timeout
    assert "[sandbox] a process used its 1 s of CPU time" in out.content
    await assert_still_answering(sandbox)


async def test_file_size_is_bounded(sandbox: LocalSandbox) -> None:
    out = await shell(sandbox, "head -c 20M /dev/zero > big.bin; echo status=$?")
    assert "File size limit exceeded" in out.content
    assert "[sandbox] a file reached the 16 MiB size bound" in out.content
    assert (sandbox.workspace / "big.bin").stat().st_size <= 16 * 1024 * 1024


async def test_workspace_size_is_bounded(sandbox: LocalSandbox) -> None:
    out = await shell(
        sandbox,
        "for i in 1 2 3 4 5 6 7 8; do head -c 15M /dev/urandom > f$i.bin; done; sleep 20; echo done",
        timeout=25,
    )
    assert "[sandbox] stopped: the workspace grew past its bound of 48 MiB" in out.content, out
    assert not out.content.endswith("[exit code: 0]"), out
    with pytest.raises(WorkspaceFull):
        await sandbox.write_file("more.txt", b"x" * 1024)
    refused = await TOOLBOX.run("write_file", {"path": "more.txt", "content": "x"}, sandbox)
    assert refused.is_error and "LOCAL_SANDBOX_WORKSPACE_MIB" in refused.content
    # Deleting makes room again.
    out = await shell(sandbox, "rm -f f*.bin; echo cleaned")
    assert "cleaned" in out.content and "[sandbox]" not in out.content
    await sandbox.write_file("more.txt", b"fits again")


async def test_50_mb_of_output_is_cut_not_kept(sandbox: LocalSandbox) -> None:
    out = await shell(sandbox, "head -c 50000000 /dev/zero | tr '\\0' a; echo; echo end")
    assert len(out.content) < 25_000
    assert out.content.endswith("end\n[exit code: 0]")
    await assert_still_answering(sandbox)


async def test_a_command_that_never_ends_is_killed(sandbox: LocalSandbox) -> None:
    out = await shell(sandbox, "sleep 100000", timeout=1)
    assert out.is_error and "timed out after 1 s" in out.content
    assert processes_in(sandbox.workspace) == []
    await assert_still_answering(sandbox)


async def test_ordinary_work_still_works(sandbox: LocalSandbox) -> None:
    """git, python (a venv), node and npm, a C build with make: in the workspace."""
    script = r"""
set -e
git init -q -b main proj && cd proj
git config user.email a@b.c && git config user.name agent
printf 'int main(void){return 0;}\n' > main.c
printf 'main: main.c\n\tcc -o main main.c\n' > Makefile
make -s && ./main && echo built
git add -A && git commit -qm first && git log --oneline | wc -l
python3 -m venv --without-pip .venv && .venv/bin/python -c 'import sys; print("venv", sys.prefix.endswith(".venv"))'
if command -v node >/dev/null; then node -e 'console.log("node", 1 + 1)'; else echo "node 2"; fi
if command -v npm >/dev/null; then npm init -y >/dev/null && test -f package.json && echo npm-ok; else echo npm-ok; fi
date +%Z >/dev/null && echo time-ok
"""
    out = await shell(sandbox, script, timeout=60)
    assert out.content.endswith("[exit code: 0]"), out.content
    for expected in ("built", "venv True", "node 2", "npm-ok", "time-ok"):
        assert expected in out.content.splitlines(), (expected, out.content)
    # The server can snapshot, restore and delete what the sandbox user made.
    provider = sandbox._provider
    snapshot = await provider.pause(sandbox)
    resumed = await provider.resume(sandbox.session_id, snapshot)
    again = await shell(resumed, "cd proj && git status --short && ./main && echo still-built")
    assert "still-built" in again.content, again
    await provider.terminate(resumed.session_id, resumed.id, None)
    assert not resumed.workspace.exists()


async def test_files_written_by_the_server_belong_to_the_sandbox_user(
    sandbox: LocalSandbox,
) -> None:
    await sandbox.write_file("dir/sub/notes.txt", b"from the server\n")
    out = await shell(
        sandbox,
        "echo from the agent >> dir/sub/notes.txt && mkdir dir/sub/more && cat dir/sub/notes.txt",
    )
    assert "from the server\nfrom the agent" in out.content, out
    assert (sandbox.workspace / "dir").stat().st_uid == sandbox.user.uid


async def test_an_old_root_owned_workspace_is_handed_over(provider: LocalSandboxProvider) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root server hands workspaces to per-session users")
    sandbox = await provider.create("legacy")
    legacy = sandbox.workspace / "old.txt"
    legacy.write_text("made before sandbox users\n")
    os.chown(sandbox.workspace, 0, 0)
    os.chown(legacy, 0, 0)
    snapshot = await provider.pause(sandbox)
    resumed = await provider.resume("legacy", snapshot)
    out = await shell(resumed, "echo appended >> old.txt && cat old.txt")
    assert "made before sandbox users\nappended" in out.content, out


async def test_the_embedded_app_gets_the_same_sandbox(tmp_path: Path) -> None:
    """The app's defaults (network on) through the same factory the app uses."""
    require_bwrap()
    settings = Settings(
        data_dir=tmp_path / "data", config_dir=tmp_path / "config", local_sandbox_cpu_seconds=1
    )
    provider = open_sandbox_provider(settings)
    assert isinstance(provider, LocalSandboxProvider)
    try:
        assert provider.isolation == "bwrap" and provider.network
        assert provider.limits.cpu_seconds == 1
        sandbox = await provider.create("embedded")
        out = await shell(
            sandbox,
            "id -u; cat /etc/shadow; test -e /etc/resolv.conf && echo resolv-present; "
            "echo $PATH; python3 -c 'while True: pass'",
        )
        lines = out.content.splitlines()
        assert lines[0] != "0" and "resolv-present" in lines, out
        assert "cat: /etc/shadow: No such file or directory" in out.content
        assert "/root" not in lines[2]  # PATH lists only what the sandbox sees
        assert "LOCAL_SANDBOX_CPU_SECONDS" in out.content
    finally:
        await provider.close()
