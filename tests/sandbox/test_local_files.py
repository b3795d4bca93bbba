"""Files of the local sandbox: workspace-relative paths that cannot lead out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.errors import ValidationError
from sandbox.base import FileEntry, FileNotFound, IsADirectory, NotADirectory, SandboxPathError
from sandbox.local import LocalSandbox, LocalSandboxProvider, bwrap_available
from sandbox.local_files import FileTooLarge, WorkspaceFiles
from tests.conftest import require


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalSandboxProvider]:
    p = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none")
    yield p
    await p.close()


@pytest.fixture
async def sandbox(provider: LocalSandboxProvider) -> LocalSandbox:
    return await provider.create("files")


async def test_write_read_and_list(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("src/pkg/mod.py", b"print('hi')\n")
    await sandbox.write_file("README.md", b"# readme")
    await sandbox.write_file("b.txt", b"")
    assert await sandbox.read_file("src/pkg/mod.py") == b"print('hi')\n"
    assert await sandbox.read_file("./src//pkg/mod.py") == b"print('hi')\n"
    root = [
        FileEntry(name="README.md", path="README.md", is_directory=False, size=8),
        FileEntry(name="b.txt", path="b.txt", is_directory=False, size=0),
        FileEntry(name="src", path="src", is_directory=True, size=0),
    ]
    for path in ("", "/", "."):
        assert await sandbox.list_dir(path) == root
    assert await sandbox.list_dir("src/pkg/") == [
        FileEntry(name="mod.py", path="src/pkg/mod.py", is_directory=False, size=12)
    ]
    await sandbox.write_file("b.txt", b"overwritten")
    assert await sandbox.read_file("b.txt") == b"overwritten"


async def test_files_written_by_commands_are_readable(sandbox: LocalSandbox) -> None:
    await sandbox.exec("mkdir -p out && printf 'made' > out/f", timeout=10)
    assert await sandbox.read_file("out/f") == b"made"


@pytest.mark.parametrize(
    "path", ["../../etc/passwd", "..", "a/../../x", "/etc/passwd", "~/x", "a\\b", "a\x00b"]
)
async def test_paths_that_escape_are_refused(sandbox: LocalSandbox, path: str) -> None:
    with pytest.raises(SandboxPathError):
        await sandbox.read_file(path)
    with pytest.raises(SandboxPathError):
        await sandbox.write_file(path, b"x")
    with pytest.raises(SandboxPathError):
        await sandbox.list_dir(path)


async def test_symlinks_out_of_the_workspace_are_refused(sandbox: LocalSandbox) -> None:
    result = await sandbox.exec("ln -s /etc/passwd x && ln -s /etc d && ln -s ../.. up", timeout=10)
    assert result.exit_code == 0
    for call in (
        sandbox.read_file("x"),
        sandbox.read_file("d/passwd"),
        sandbox.list_dir("d"),
        sandbox.list_dir("up"),
        sandbox.write_file("d/evil", b"x"),
        sandbox.write_file("x", b"x"),
    ):
        with pytest.raises(SandboxPathError):
            await call
    names = [entry.name for entry in await sandbox.list_dir("")]
    assert names == ["d", "up", "x"]  # listed, as links, not followed


async def test_symlinks_inside_the_workspace_are_followed(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("real/file.txt", b"inside")
    await sandbox.exec("ln -s real alias && ln -s real/file.txt link.txt", timeout=10)
    assert await sandbox.read_file("link.txt") == b"inside"
    assert await sandbox.read_file("alias/file.txt") == b"inside"
    assert [e.path for e in await sandbox.list_dir("alias")] == ["alias/file.txt"]


async def test_symlinks_out_are_refused_under_bwrap(tmp_path: Path) -> None:
    require(
        bwrap_available(), "bubblewrap (bwrap) is not installed or cannot create a sandbox here"
    )
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="bwrap")
    try:
        sandbox = await provider.create("s")
        await sandbox.exec("ln -s /etc/passwd x", timeout=10)
        with pytest.raises(SandboxPathError):
            await sandbox.read_file("x")
    finally:
        await provider.close()


async def test_a_symlink_swapped_in_after_the_check_is_refused(sandbox: LocalSandbox) -> None:
    # A command may replace a directory with a link between the check and the open.
    await sandbox.write_file("dir/f", b"x")
    files = WorkspaceFiles(sandbox.workspace)
    resolved = files._resolve("dir/f")
    (sandbox.workspace / "dir" / "f").unlink()
    (sandbox.workspace / "dir").rmdir()
    (sandbox.workspace / "dir").symlink_to("/etc")
    files._resolve = lambda path: resolved  # type: ignore[method-assign]
    with pytest.raises(SandboxPathError):
        files.read("dir/f")
    with pytest.raises(SandboxPathError):
        files.write("dir/f", b"x")


async def test_missing_paths_and_wrong_kinds(sandbox: LocalSandbox) -> None:
    await sandbox.write_file("dir/file.txt", b"x")
    with pytest.raises(FileNotFound):
        await sandbox.read_file("nope.txt")
    with pytest.raises(FileNotFound):
        await sandbox.read_file("nope/deeper.txt")
    with pytest.raises(FileNotFound):
        await sandbox.read_file("dir/file.txt/below")
    with pytest.raises(FileNotFound):
        await sandbox.list_dir("nope")
    with pytest.raises(IsADirectory):
        await sandbox.read_file("dir")
    with pytest.raises(IsADirectory):
        await sandbox.read_file("")
    with pytest.raises(IsADirectory):
        await sandbox.write_file("dir", b"x")
    with pytest.raises(NotADirectory):
        await sandbox.list_dir("dir/file.txt")
    with pytest.raises(NotADirectory):
        await sandbox.write_file("dir/file.txt/below", b"x")


async def test_large_files_are_refused_without_loading(sandbox: LocalSandbox) -> None:
    with open(sandbox.workspace / "big.bin", "wb") as f:  # noqa: ASYNC230 - test set-up
        f.truncate(51 * 1024 * 1024)  # sparse: no 51 MiB written
    with pytest.raises(FileTooLarge) as caught:
        await sandbox.read_file("big.bin")
    assert isinstance(caught.value, ValidationError)
    assert "50 MiB" in caught.value.message
    entries = await sandbox.list_dir("")
    assert entries[0].size == 51 * 1024 * 1024


async def test_read_limit_is_configurable(tmp_path: Path) -> None:
    provider = LocalSandboxProvider(tmp_path / "sandboxes", isolation="none", max_read_bytes=10)
    sandbox = await provider.create("s")
    await sandbox.write_file("ok", b"0123456789")
    await sandbox.write_file("big", b"0123456789!")
    assert await sandbox.read_file("ok") == b"0123456789"
    with pytest.raises(ValidationError):
        await sandbox.read_file("big")


async def test_special_files_do_not_hang(sandbox: LocalSandbox) -> None:
    os.mkfifo(sandbox.workspace / "pipe")
    with pytest.raises(ValidationError):
        await asyncio.wait_for(sandbox.read_file("pipe"), 5)
    with pytest.raises(ValidationError):
        await asyncio.wait_for(sandbox.write_file("pipe", b"x"), 5)
