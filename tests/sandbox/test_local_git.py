"""Cloning a repository into a local sandbox, and keeping the git token out of it.

There is no network here: real clones come from a local bare repository
(``file://``, allowed by the provider's test-only switch) and the GitHub path
is checked with a fake ``git`` on PATH that records what it was given.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.base import SandboxError
from sandbox.local import LocalSandboxProvider, bwrap_available
from sandbox.local_git import clone_failure_message, parse_repo
from tests.conftest import require
from tests.sandbox.test_local import processes_with

TOKEN = "ghp_TESTTOKEN1234567890abcdef"


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def bare_repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A file:// URL of a bare repository with one commit."""
    base = tmp_path_factory.mktemp("repos")
    work = base / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("hello from the repo\n")
    _git("add", "README.md", cwd=work)
    _git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first", cwd=work)
    _git("clone", "-q", "--bare", str(work), str(base / "origin.git"), cwd=base)
    return f"file://{base / 'origin.git'}"


@pytest.fixture(params=["none", "bwrap"])
async def provider(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[LocalSandboxProvider]:
    if request.param == "bwrap":
        require(
            bwrap_available(), "bubblewrap (bwrap) is not installed or cannot create a sandbox here"
        )
    p = LocalSandboxProvider(tmp_path / "sandboxes", isolation=request.param, allow_file_repos=True)
    yield p
    await p.close()


def fake_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """Put a fake ``git`` first on PATH; it records its environment and arguments."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    record = tmp_path / "record"
    record.mkdir()
    script = bin_dir / "git"
    script.write_text(
        f"#!/bin/sh\nenv > {record}/env\nprintf '%s\\n' \"$@\" > {record}/args\n{body}\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/local/bin:/usr/bin:/bin")
    return record


# ---------------------------------------------------------------- parsing


def test_parse_repo() -> None:
    assert parse_repo("owner/repo").url == "https://github.com/owner/repo.git"
    assert parse_repo("owner/repo").display == "owner/repo"
    assert parse_repo("Owner-1/re.po.git").url == "https://github.com/Owner-1/re.po.git"
    url = "https://gitlab.example.com/group/sub/project.git"
    assert parse_repo(url).url == url
    assert parse_repo(url).origin == "https://gitlab.example.com/"
    for bad in (
        "http://github.com/o/r",
        "git@github.com:o/r.git",
        "ssh://github.com/o/r",
        "o/..",
        "o",
        "o/r/x",
    ):
        with pytest.raises(SandboxError, match="owner/repo"):
            parse_repo(bad)
    with pytest.raises(SandboxError, match="owner/repo"):
        parse_repo("file:///tmp/x")  # only with allow_file
    assert parse_repo("file:///tmp/x", allow_file=True).local_path == "/tmp/x"


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    with pytest.raises(SandboxError, match="gitToken") as caught:
        parse_repo(f"https://x-access-token:{TOKEN}@github.com/o/r.git")
    assert TOKEN not in str(caught.value.body())


def test_failure_messages() -> None:
    source = parse_repo("o/r")
    assert "unreachable" in clone_failure_message(
        source, "fatal: unable to access: Could not resolve host", None
    )
    assert "gitToken" in clone_failure_message(source, "remote: Repository not found.", None)
    generic = clone_failure_message(source, "warning: x\nfatal: destination path exists\n", None)
    assert generic == "Could not clone o/r: fatal: destination path exists"
    assert "took too long" in clone_failure_message(source, "", None, timed_out=True)
    leaked = clone_failure_message(source, f"fatal: bad thing {TOKEN}", TOKEN)
    assert TOKEN not in leaked and "***" in leaked


# ---------------------------------------------------------------- real clones


async def test_clone_a_repository(provider: LocalSandboxProvider, bare_repo: str) -> None:
    progress: list[str] = []

    async def on_progress(line: str) -> None:
        progress.append(line)

    sandbox = await provider.create("s", repo=bare_repo, on_progress=on_progress)
    assert progress == ["creating sandbox", f"cloning {bare_repo}"]
    assert await sandbox.read_file("README.md") == b"hello from the repo\n"
    log = await sandbox.exec("git log --format=%s", timeout=10)
    assert log.stdout == "first\n", log.stderr
    assert any("cloned" in line for line in await provider.logs("s", sandbox.id, 10))


async def test_clone_with_a_token_leaves_no_trace(
    provider: LocalSandboxProvider, bare_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = await provider.create("s", repo=bare_repo, git_token=TOKEN)
    config = (sandbox.workspace / ".git" / "config").read_text()
    assert TOKEN not in config and "extraheader" not in config.lower()
    env = await sandbox.exec("env; git config --list", timeout=10)
    assert TOKEN not in env.stdout and "GIT_CONFIG" not in env.stdout
    assert not any(TOKEN in line for line in await provider.logs("s", sandbox.id, 100))
    snapshot_id = await provider.pause(sandbox)
    snapshot = provider.root / "snapshots" / "s" / snapshot_id
    for path in snapshot.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


async def test_a_failed_clone_raises_and_cleans_up(
    provider: LocalSandboxProvider, tmp_path: Path
) -> None:
    missing = f"file://{tmp_path / 'no-such-repo.git'}"
    with pytest.raises(SandboxError, match="Could not clone") as caught:
        await provider.create("s", repo=missing, git_token=TOKEN)
    assert TOKEN not in str(caught.value.body())
    assert not (provider.root / "live" / "s").exists()
    assert not any(TOKEN in line for line in await provider.logs("s", None, 100))
    assert any("clone failed" in line for line in await provider.logs("s", None, 100))


async def test_file_repositories_need_the_test_switch(tmp_path: Path, bare_repo: str) -> None:
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    with pytest.raises(SandboxError, match="owner/repo"):
        await provider.create("s", repo=bare_repo)
    assert not (provider.root / "live" / "s").exists()


# ---------------------------------------------------------------- the GitHub path, with a fake git


async def test_token_goes_to_the_clone_command_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_server_own_token")
    record = fake_git(
        tmp_path,
        monkeypatch,
        'mkdir -p .git && printf \'[remote "origin"]\\n\\turl = %s\\n\' "$4" > .git/config',
    )
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    progress: list[str] = []

    async def on_progress(line: str) -> None:
        progress.append(line)

    sandbox = await provider.create(
        "s", repo="owner/repo", git_token=TOKEN, on_progress=on_progress
    )
    assert progress == ["creating sandbox", "cloning owner/repo"]

    args = (record / "args").read_text().splitlines()
    assert args == ["clone", "--quiet", "--", "https://github.com/owner/repo.git", "."]
    env = dict(
        line.split("=", 1) for line in (record / "env").read_text().splitlines() if "=" in line
    )
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert env["GIT_CONFIG_COUNT"] == "1"
    assert env["GIT_CONFIG_KEY_0"] == "http.https://github.com/.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"] == f"Authorization: Basic {basic}"
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_ALLOW_PROTOCOL"] == "https"
    assert "ANTHROPIC_API_KEY" not in env and "GITHUB_TOKEN" not in env
    assert TOKEN not in " ".join(args)

    # Later commands see none of it.
    later = await sandbox.exec("env", timeout=10)
    assert (
        TOKEN not in later.stdout and basic not in later.stdout and "GIT_CONFIG" not in later.stdout
    )
    assert TOKEN not in (sandbox.workspace / ".git" / "config").read_text()
    await provider.close()


async def test_failed_clone_message_hides_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_git(
        tmp_path,
        monkeypatch,
        f'echo "remote: Invalid username or password ({TOKEN})" >&2\n'
        f"echo \"fatal: Authentication failed for 'https://x:{TOKEN}@github.com/owner/repo.git/'\" >&2\n"
        "exit 128",
    )
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    with pytest.raises(SandboxError) as caught:
        await provider.create("s", repo="owner/repo", git_token=TOKEN)
    error = caught.value
    assert error.message == (
        "Could not clone owner/repo: the repository does not exist or is private "
        "(check that the gitToken can read it)"
    )
    assert TOKEN not in str(error.body())
    lines = await provider.logs("s", None, 100)
    assert any("Authentication failed" in line for line in lines)
    assert not any(TOKEN in line for line in lines)
    assert not (provider.root / "live" / "s").exists()


async def test_cancelled_clone_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = fake_git(tmp_path, monkeypatch, "touch started; exec sleep 309.5")
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    task = asyncio.create_task(provider.create("s", repo="owner/repo", git_token=TOKEN))
    for _ in range(100):
        if (record / "args").exists():
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (provider.root / "live" / "s").exists()
    assert processes_with("309.5") == []


async def test_a_token_with_a_newline_is_refused(tmp_path: Path) -> None:
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    with pytest.raises(SandboxError, match="gitToken"):
        await provider.create("s", repo="owner/repo", git_token="abc\nX-Evil: 1")
    assert not (provider.root / "live" / "s").exists()


async def test_sweep_spares_a_session_being_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its row may be newer than the caller's list of live sessions.
    record = fake_git(tmp_path, monkeypatch, "sleep 0.5; mkdir .git")
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    task = asyncio.create_task(provider.create("new", repo="owner/repo"))
    for _ in range(100):
        if (record / "args").exists():
            break
        await asyncio.sleep(0.02)
    assert await provider.sweep(set()) == 0
    sandbox = await task
    assert await sandbox.is_alive()
    assert await provider.sweep(set()) == 1
    assert not await sandbox.is_alive()
