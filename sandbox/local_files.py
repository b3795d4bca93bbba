"""File access inside a local workspace that cannot be led outside it.

A path is normalised, resolved (symlinks followed), and refused when the result
lies outside the workspace. The file is then opened by walking the resolved
path one component at a time from the workspace directory with
``O_NOFOLLOW``: a command that swaps a directory for a symlink between the
check and the open makes the open fail instead of escaping.

The functions here block: the sandbox calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from collections.abc import Iterator

from backend.errors import ValidationError
from sandbox.base import (
    FileEntry,
    FileNotFound,
    IsADirectory,
    NotADirectory,
    SandboxError,
    SandboxPathError,
    normalize_relative_path,
)

__all__ = ["MAX_READ_BYTES", "FileTooLarge", "WorkspaceFiles"]

MAX_READ_BYTES = 50 * 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FileTooLarge(ValidationError):
    """A file over the read limit: refused rather than loaded into memory."""

    default_message = "File is too large to read"


class WorkspaceFiles:
    """Reads, writes and lists files under one workspace directory."""

    def __init__(
        self,
        workspace: str | os.PathLike[str],
        *,
        max_read_bytes: int = MAX_READ_BYTES,
        owner: tuple[int, int] | None = None,
    ) -> None:
        self.root = os.path.realpath(workspace)
        self.max_read_bytes = max_read_bytes
        # (uid, gid) that files and directories made here are given: the
        # sandbox user's, when the server (root) writes for it.
        self.owner = owner

    def read(self, path: str) -> bytes:
        """The bytes of a regular file."""
        rel, parts = self._resolve(path)
        if not parts:
            raise IsADirectory(details={"path": rel})
        with _translate(rel), self._open_dir(parts[:-1]) as dir_fd:
            fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
            )
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectory(details={"path": rel})
            if not stat.S_ISREG(info.st_mode):
                raise ValidationError("Not a regular file", details={"path": rel})
            if info.st_size > self.max_read_bytes:
                raise self._too_large(rel, info.st_size)
            chunks: list[bytes] = []
            size = 0
            while chunk := os.read(fd, 1024 * 1024):
                size += len(chunk)
                if size > self.max_read_bytes:  # it grew while we read
                    raise self._too_large(rel, size)
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write(self, path: str, data: bytes) -> None:
        """Create or overwrite a file, creating parent directories."""
        rel, parts = self._resolve(path)
        if not parts:
            raise IsADirectory(details={"path": rel})
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        with (
            _translate(rel, not_a_directory=True),
            self._open_dir(parts[:-1], create=True) as dir_fd,
        ):
            fd = os.open(parts[-1], flags, 0o644, dir_fd=dir_fd)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValidationError("Not a regular file", details={"path": rel})
            if self.owner is not None:
                os.fchown(fd, *self.owner)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def list(self, path: str) -> list[FileEntry]:
        """The entries of a directory, sorted by name."""
        rel, parts = self._resolve(path)
        entries: list[FileEntry] = []
        with (
            _translate(rel, not_a_directory=True),
            self._open_dir(parts) as dir_fd,
            os.scandir(dir_fd) as it,
        ):
            for entry in it:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we listed
                is_dir = stat.S_ISDIR(info.st_mode)
                entries.append(
                    FileEntry(
                        name=entry.name,
                        path=posixpath.join(rel, entry.name) if rel else entry.name,
                        is_directory=is_dir,
                        size=0 if is_dir else info.st_size,
                    )
                )
        entries.sort(key=lambda e: e.name)
        return entries

    def _resolve(self, path: str) -> tuple[str, list[str]]:
        """(the normalised path, the components of its resolved path below the root)."""
        rel = normalize_relative_path(path)
        real = os.path.realpath(os.path.join(self.root, rel))
        if real == self.root:
            return rel, []
        if not real.startswith(self.root + os.sep):
            raise SandboxPathError(details={"path": path})
        return rel, real[len(self.root) + 1 :].split(os.sep)

    @contextlib.contextmanager
    def _open_dir(self, parts: list[str], *, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory ``parts`` below the root, following no symlink."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts:
                try:
                    next_fd = _open_subdir(part, fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    next_fd = _open_subdir(part, fd)
                    if self.owner is not None:
                        os.fchown(next_fd, *self.owner)
                os.close(fd)
                fd = next_fd
            yield fd
        finally:
            os.close(fd)

    def _too_large(self, rel: str, size: int) -> ValidationError:
        limit_mib = self.max_read_bytes / (1024 * 1024)
        return FileTooLarge(
            f"File is too large to read ({size} bytes; the limit is {limit_mib:g} MiB)",
            details={"path": rel, "size": size, "limit": self.max_read_bytes},
        )


def _open_subdir(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except NotADirectoryError:
        # O_DIRECTORY | O_NOFOLLOW on a symlink fails with ENOTDIR, not ELOOP.
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            raise OSError(errno.ELOOP, "Symbolic link in the path", name) from None
        raise


@contextlib.contextmanager
def _translate(rel: str, *, not_a_directory: bool = False) -> Iterator[None]:
    """OS errors to the sandbox's errors."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFound(details={"path": rel}) from None
    except NotADirectoryError:
        # Listing a file, or a file used as a directory on the way to the target.
        if not_a_directory:
            raise NotADirectory(details={"path": rel}) from None
        raise FileNotFound(details={"path": rel}) from None
    except IsADirectoryError:
        raise IsADirectory(details={"path": rel}) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink appeared after the check
            raise SandboxPathError(details={"path": rel}) from None
        if exc.errno == errno.ENXIO:  # a FIFO or socket opened for writing
            raise ValidationError("Not a regular file", details={"path": rel}) from None
        raise SandboxError(
            f"File access failed: {exc.strerror or exc}", details={"path": rel}
        ) from None
