"""The sandbox interface, implemented by the local and the Modal providers.

A ``SandboxProvider`` creates, pauses (snapshots), resumes, reattaches and
terminates ``Sandbox`` handles. A ``Sandbox`` runs commands and reads/writes
files inside one session's workspace. Paths given to a ``Sandbox`` are relative
to the workspace root (``""`` or ``"/"`` is the root itself); a path that escapes
the workspace (``..``, absolute host paths, symlinks leading out) raises
``SandboxPathError``.

Errors: ``backend.errors.SandboxError`` for provider failures (HTTP 502),
``SandboxPathError`` (400), ``FileNotFound`` (404), ``IsADirectory`` /
``NotADirectory`` (400, they are ``ValidationError``s).

The workspace's ``.agent-tui/`` (``RESERVED_DIR``) holds agent-tui's own files
for the session (OpenCode's data, service sockets and logs). A ``Sandbox``
reads and writes it like any path (the engine keeps its state there); what
faces users and the model (the files API, the agent's file tools) goes
through ``check_not_reserved`` and ``visible_entries``, and the providers put
a ``.gitignore`` of ``*`` in it so git never shows it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from backend.errors import FileNotFound, SandboxError, SandboxPathError, ValidationError

__all__ = [
    "RESERVED_DIR",
    "ExecResult",
    "FileEntry",
    "FileNotFound",
    "IsADirectory",
    "NotADirectory",
    "OutputCallback",
    "ProgressCallback",
    "ReservedPath",
    "Sandbox",
    "SandboxError",
    "SandboxPathError",
    "SandboxProvider",
    "ServiceHandle",
    "ServiceSpec",
    "SnapshotLost",
    "check_not_reserved",
    "normalize_relative_path",
    "visible_entries",
]

RESERVED_DIR = ".agent-tui"
# What the providers write to RESERVED_DIR/.gitignore: git ignores the whole directory.
RESERVED_GITIGNORE = b"# agent-tui's own files for this session (OpenCode, services)\n*\n"

# (stream, text) with stream "stdout" or "stderr"
OutputCallback = Callable[[str, str], Awaitable[None]]
# a human-readable progress line: "creating sandbox", "cloning owner/repo"
ProgressCallback = Callable[[str], Awaitable[None]]


class IsADirectory(ValidationError):
    default_message = "Path is a directory"


class NotADirectory(ValidationError):
    default_message = "Path is not a directory"


class ReservedPath(ValidationError):
    """A path under the workspace's ``.agent-tui/``, which is not the user's to see or change."""

    default_message = (
        ".agent-tui/ holds agent-tui's own files for the session (OpenCode's data, "
        "service sockets and logs); it is not part of the workspace's files"
    )


class SnapshotLost(SandboxError):
    """A paused sandbox's snapshot cannot be restored: the workspace is gone."""

    default_message = "The sandbox snapshot could not be restored"


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one command."""

    exit_code: int  # -1 when it timed out
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False  # output was cut to the limit


@dataclass(frozen=True)
class FileEntry:
    """One entry of a directory listing; ``path`` is relative to the workspace root."""

    name: str
    path: str
    is_directory: bool
    size: int


def normalize_relative_path(path: str) -> str:
    """Normalise a client-given workspace path, or raise ``SandboxPathError``.

    ``""``, ``"/"`` and ``"."`` mean the root (returned as ``""``). Absolute paths
    are refused, as is any ``..`` that climbs out of the root. Symlinks cannot be
    judged here; each provider checks the resolved path too.
    """
    if "\x00" in path:
        raise SandboxPathError(details={"path": path})
    if path in ("", "/", "."):
        return ""
    if path.startswith("/") or path.startswith("~") or "\\" in path:
        raise SandboxPathError(details={"path": path})
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise SandboxPathError(details={"path": path})
        parts.append(part)
    return posixpath.join(*parts) if parts else ""


def check_not_reserved(path: str) -> str:
    """``normalize_relative_path(path)``, refusing ``.agent-tui`` and anything under
    it with ``ReservedPath``. Hiding, not a boundary: the sandbox's own processes
    (the agent's shell, OpenCode) see the directory like any other."""
    relative = normalize_relative_path(path)
    if relative == RESERVED_DIR or relative.startswith(RESERVED_DIR + "/"):
        raise ReservedPath(details={"path": path})
    return relative


def visible_entries(entries: list[FileEntry]) -> list[FileEntry]:
    """A listing without ``.agent-tui`` (it only exists at the workspace root)."""
    return [entry for entry in entries if entry.path != RESERVED_DIR]


@dataclass(frozen=True)
class ServiceSpec:
    """A long-running service to start inside a sandbox (``Sandbox.start_service``).

    ``argv`` runs in the workspace root and must listen on ``127.0.0.1:port``
    inside the sandbox. ``host_app`` (an ASGI app of this server) is made
    reachable from inside the sandbox at the URL the provider substitutes for
    ``{host_url}`` in ``env`` values; nothing else of the server is. ``binaries``
    are host paths the local provider exposes read-only (the service's program).
    """

    name: str
    argv: tuple[str, ...]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    host_app: Any = None
    binaries: tuple[str, ...] = ()
    # Where the service reads a password for HTTP basic auth (user ``name``):
    # a provider that exposes the port publicly (Modal's tunnels) sets one.
    password_env: str = ""
    # A long-lived runtime that runs its commands through ``$SHELL`` (OpenCode's
    # Bun): a provider that bounds each process's memory (the local sandbox's
    # RLIMIT_DATA) runs the service itself without it and sets ``SHELL`` to a
    # shell that puts the commands' memory and CPU-time bounds back on each
    # command. RLIMIT_DATA counts address space reserved but never used, of which
    # Bun reserves tens of GiB: under 2 GiB its JIT is off (turns 4-5x slower),
    # under a few GiB it crashes as it grows.
    shell_bounds: bool = False


@runtime_checkable
class ServiceHandle(Protocol):
    """A running service: how the server reaches its port, and how to stop it."""

    @property
    def base_url(self) -> str:
        """The URL to use with ``transport`` (``http://...``)."""
        ...

    @property
    def transport(self) -> Any:
        """An ``httpx.AsyncBaseTransport`` that reaches the service, or None for plain TCP."""
        ...

    @property
    def headers(self) -> dict[str, str]:
        """Headers every request to the service needs (its basic auth, if any)."""
        ...

    async def is_running(self) -> bool:
        """Whether the service's process is still there."""
        ...

    async def stop(self) -> None:
        """Stop the service and whatever relays it. Idempotent."""
        ...


@runtime_checkable
class Sandbox(Protocol):
    """One session's running sandbox."""

    @property
    def id(self) -> str:
        """The provider's id for this sandbox (a directory name, ``sb-...``)."""
        ...

    async def exec(
        self,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the command's own deadline, enforced by the provider
        on_output: OutputCallback | None = None,
        max_output_bytes: int = 30_000,
    ) -> ExecResult:
        """Run ``command`` with ``bash -lc`` in the workspace root.

        Output is streamed to ``on_output`` as it arrives and kept (up to
        ``max_output_bytes`` per stream, head and tail, with a note in the middle)
        in the result. On timeout the process group is killed and ``exit_code`` is
        -1. If the calling task is cancelled, the process group is killed before
        ``CancelledError`` propagates: an interrupt leaves no process behind.
        """
        ...

    async def read_file(self, path: str) -> bytes: ...

    async def write_file(self, path: str, data: bytes) -> None:
        """Create or overwrite, creating parent directories."""
        ...

    async def list_dir(self, path: str) -> list[FileEntry]:
        """Entries of a directory, sorted by name."""
        ...

    async def is_alive(self) -> bool:
        """Whether the sandbox can still run commands."""
        ...

    async def start_service(self, spec: ServiceSpec) -> ServiceHandle:
        """Start ``spec`` in the background and return once it was launched (the
        caller polls its health). It stops with the sandbox (pause, terminate)."""
        ...

    async def set_command_env(self, env: dict[str, str], *, host_app: Any = None) -> None:
        """Add ``env`` to the environment of every later ``exec`` (replacing what an
        earlier call set; ``{}`` clears it). With ``host_app`` (an ASGI app of this
        server; local sandboxes only), each command reaches that app, and nothing
        else of the server, at the URL substituted for ``{host_url}`` in ``env``'s
        values. Used for the model proxy's URL and token."""
        ...


@runtime_checkable
class SandboxProvider(Protocol):
    """Makes and manages sandboxes of one kind (``name`` is "local" or "modal")."""

    name: str

    @property
    def isolation(self) -> str:
        """How commands are isolated ("bwrap", "none", "modal"); shown to users."""
        ...

    async def create(
        self,
        session_id: str,
        *,
        repo: str | None = None,
        git_token: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Sandbox:
        """Create a sandbox with an empty workspace, or a clone of ``repo``.

        ``git_token`` is used for the clone command only and is never written to
        the workspace, the environment of later commands, a snapshot or a log.
        """
        ...

    async def attach(self, session_id: str, sandbox_id: str) -> Sandbox | None:
        """Reattach to a sandbox that is still running (after a server restart);
        None when it is gone."""
        ...

    async def pause(self, sandbox: Sandbox) -> str:
        """Snapshot the workspace, stop the sandbox, and return the snapshot id."""
        ...

    async def resume(self, session_id: str, snapshot_id: str) -> Sandbox:
        """Start a sandbox from a snapshot; raise ``SnapshotLost`` if it is gone."""
        ...

    async def terminate(
        self, session_id: str, sandbox_id: str | None, snapshot_id: str | None
    ) -> None:
        """Stop the sandbox and drop what it holds (workspace, snapshot). Idempotent."""
        ...

    async def logs(self, session_id: str, sandbox_id: str | None, tail: int) -> list[str]:
        """The provider's recent log lines for this sandbox (commands run, errors)."""
        ...

    async def sweep(self, live_session_ids: set[str]) -> int:
        """Terminate sandboxes whose session is not in ``live_session_ids``;
        return how many were terminated."""
        ...

    async def close(self) -> None: ...
