"""The local sandbox provider: one workspace directory per session on this machine.

Workspaces and snapshots are directories under ``root`` (see
``sandbox.local_layout``); pausing and resuming are renames, so both are instant.

Commands run under bubblewrap when it is available (see
``sandbox.local_isolation`` for what the jail allows), as a user that is never
root (``sandbox.local_identity``) and under resource bounds
(``sandbox.local_limits``); else directly with a scrubbed environment
(``isolation == "none"``, for which the server asks an explicit opt-in).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import ValidationError
from sandbox.base import (
    ExecResult,
    FileEntry,
    OutputCallback,
    ProgressCallback,
    Sandbox,
    SandboxError,
    ServiceSpec,
    SnapshotLost,
)
from sandbox.local_files import MAX_READ_BYTES, WorkspaceFiles
from sandbox.local_git import (
    RepoSource,
    check_token,
    clone_argv,
    clone_env,
    clone_failure_message,
    parse_repo,
    redact,
)
from sandbox.local_identity import SandboxUser, chown_tree, sandbox_user, write_identity
from sandbox.local_isolation import (
    BwrapIsolation,
    Isolation,
    NoIsolation,
    bwrap_available,
    hidden_directories,
    isolation_tools,
    minimal_env,
    sandbox_path,
)
from sandbox.local_layout import SAFE_ID, WorkspaceLayout
from sandbox.local_limits import ResourceLimits, WorkspaceMeter, explain_limit

if TYPE_CHECKING:
    from sandbox.local_command_access import CommandAccess
    from sandbox.local_service import LocalService

from sandbox.local_process import ProcessSet, kill_processes_in, run_process, with_note

__all__ = [
    "DEFAULT_UID_BASE",
    "BwrapUnavailable",
    "LocalSandbox",
    "LocalSandboxProvider",
    "ResourceLimits",
    "WorkspaceFull",
    "bwrap_available",
]

# First host uid of the per-session sandbox users (a root server only).
DEFAULT_UID_BASE = 1_000_000
_MIB = 1024 * 1024
# The workspace size is measured at least this often while a command runs,
# less often when one measurement takes long (at most ~10% of a core).
_WATCH_SECONDS = 1.0

_MAX_LOGGED_SESSIONS = 1024
_COMMAND_LOG_CHARS = 200


class BwrapUnavailable(SandboxError):
    """``isolation="bwrap"`` was asked for but bubblewrap cannot be used here."""

    default_message = "bubblewrap (bwrap) is required for the local sandbox but is not usable here"


class WorkspaceFull(ValidationError):
    """A write would take the workspace past its size bound."""

    default_message = "The workspace is full"


class LocalSandbox:
    """One session's running sandbox: a workspace directory and its processes."""

    def __init__(
        self,
        provider: LocalSandboxProvider,
        session_id: str,
        sandbox_id: str,
        workspace: Path,
        *,
        user: SandboxUser,
        etc_files: dict[str, Path],
    ) -> None:
        self._provider = provider
        self._id = sandbox_id
        self.session_id = session_id
        self.workspace = workspace
        self.user = user
        self._etc_files = etc_files
        self._files = WorkspaceFiles(
            workspace,
            max_read_bytes=provider.max_read_bytes,
            owner=(user.uid, user.gid) if user.switch else None,
        )
        self._processes = ProcessSet()
        self._alive = True
        self._meter = WorkspaceMeter(str(workspace), provider.limits.workspace_bytes)
        self._access: CommandAccess | None = None

    @property
    def id(self) -> str:
        """The sandbox id, ``local-`` and 12 hex digits; a new one after each resume."""
        return self._id

    async def exec(
        self,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the Sandbox protocol's signature
        on_output: OutputCallback | None = None,
        max_output_bytes: int = 30_000,
    ) -> ExecResult:
        """Run ``command`` with ``bash -lc`` in the workspace (see ``Sandbox.exec``).

        Under bubblewrap, background jobs end with the command (its PID
        namespace goes away); without it they keep running until the sandbox is
        paused or terminated, but the call returns once the command exits.
        """
        self._check_alive()
        workspace = str(self.workspace)
        argv: list[str] = [self._provider._bash, "-lc", command]
        env, read_only = self.command_env(), []
        if self._access is not None:
            env = self._access.env(env)
            argv, read_only = self._access.wrap(argv)
        argv = self.command_argv(argv, read_only=read_only)
        started = time.monotonic()
        shown = _shorten(command)
        limits = self._provider.limits
        try:
            result = await run_process(
                argv,
                env=env,
                cwd=workspace,
                timeout=timeout,
                processes=self._processes,
                on_output=on_output,
                max_output_bytes=max_output_bytes,
                stop=self._watch_workspace if limits.workspace_mib else None,
            )
            result = await self._note_limits(result)
        except asyncio.CancelledError:
            self._log(f"exec interrupted after {time.monotonic() - started:.2f}s: {shown}")
            raise
        except Exception as exc:
            self._log(
                f"exec failed after {time.monotonic() - started:.2f}s ({type(exc).__name__}): {shown}"
            )
            raise
        outcome = (
            f"timed out after {timeout:g}s" if result.timed_out else f"exit {result.exit_code}"
        )
        self._log(f"exec {outcome} in {time.monotonic() - started:.2f}s: {shown}")
        return result

    def command_argv(
        self,
        argv: list[str],
        *,
        read_only: Sequence[str] = (),
        service: bool = False,
        limits: ResourceLimits | None = None,
    ) -> list[str]:
        """``argv`` wrapped to run in this sandbox: its mounts, its user, its bounds.

        Anything started inside the sandbox goes through here (the shell
        tool's commands, the clone, an agent engine run in the sandbox), so
        each gets the same guarantees. Run it with ``command_env()`` and the
        workspace as working directory. ``service``: a long-running service
        (no per-command CPU-time bound, see ``ResourceLimits.for_service``);
        ``limits`` replaces the bounds altogether (a service with
        ``ServiceSpec.shell_bounds``).
        """
        return self._provider._isolation.wrap(
            str(self.workspace),
            argv,
            user=self.user,
            etc_files=self._etc_files,
            read_only=read_only,
            service=service,
            limits=limits,
        )

    @property
    def limits(self) -> ResourceLimits:
        """The bounds every command of this sandbox runs under."""
        return self._provider.limits

    @property
    def bash(self) -> str:
        """The ``bash`` commands run with."""
        return self._provider._bash

    @property
    def prlimit(self) -> str | None:
        """The ``prlimit`` that applies them, or None where nothing does."""
        return getattr(self._provider._isolation, "prlimit", None)

    def command_env(self) -> dict[str, str]:
        """The whole environment for ``command_argv``: nothing of the server's."""
        return minimal_env(
            self.workspace, self._provider._path, user=self._provider._isolation.user_name
        )

    async def _watch_workspace(self) -> str:
        """Return (a reason to stop the command) once the workspace outgrows its bound."""
        bound = self._provider.limits.workspace_bytes
        interval = _WATCH_SECONDS
        while True:
            await asyncio.sleep(interval)
            started = time.monotonic()
            used = await asyncio.to_thread(self._meter.usage)
            if used > bound:
                return (
                    f"stopped: the workspace grew past its bound of {bound // _MIB} MiB "
                    "(LOCAL_SANDBOX_WORKSPACE_MIB); delete files to make room"
                )
            interval = max(_WATCH_SECONDS, 10 * (time.monotonic() - started))

    async def _note_limits(self, result: ExecResult) -> ExecResult:
        """Add a ``[sandbox]`` line to the result when a bound was (probably) hit."""
        limits = self._provider.limits
        notes = []
        if (reason := explain_limit(result, limits)) is not None:
            notes.append(reason)
        if limits.workspace_mib and "LOCAL_SANDBOX_WORKSPACE_MIB" not in result.stderr:
            bound = limits.workspace_bytes
            if await asyncio.to_thread(self._meter.usage) > bound:
                notes.append(
                    f"the workspace is over its bound of {bound // _MIB} MiB "
                    "(LOCAL_SANDBOX_WORKSPACE_MIB): delete files; writing files is refused until then"
                )
        if not notes:
            return result
        stderr = result.stderr
        for note in notes:
            stderr = with_note(stderr, note)
        return dataclasses.replace(result, stderr=stderr)

    async def read_file(self, path: str) -> bytes:
        """A file's bytes (``ValidationError`` over the provider's read limit)."""
        self._check_alive()
        return await asyncio.to_thread(self._files.read, path)

    async def write_file(self, path: str, data: bytes) -> None:
        """Create or overwrite, creating parent directories (``WorkspaceFull``
        when the workspace would pass its size bound)."""
        self._check_alive()
        bound = self._provider.limits.workspace_bytes
        if bound:
            used = await asyncio.to_thread(self._meter.usage, extra=len(data))
            if used + len(data) > bound:
                raise WorkspaceFull(
                    f"The workspace is full: it may hold {bound // _MIB} MiB "
                    "(LOCAL_SANDBOX_WORKSPACE_MIB); delete files first",
                    details={"path": path, "limitBytes": bound},
                )
        await asyncio.to_thread(self._files.write, path, data)

    async def list_dir(self, path: str) -> list[FileEntry]:
        """Entries of a directory, sorted by name."""
        self._check_alive()
        return await asyncio.to_thread(self._files.list, path)

    async def is_alive(self) -> bool:
        """Not paused or terminated, and the workspace is still there."""
        return self._alive and await asyncio.to_thread(self.workspace.is_dir)

    async def _stop(self) -> None:
        """Refuse new commands and kill every process of this sandbox."""
        self._alive = False
        await self._processes.kill_all(close=True)
        access, self._access = self._access, None
        if access is not None:
            await access.stop()
        # Jobs that left the command's process group (setsid, daemons) but
        # still work in the workspace; without bwrap nothing else finds them.
        await asyncio.to_thread(kill_processes_in, str(self.workspace))

    async def start_service(self, spec: ServiceSpec) -> LocalService:
        """Start a long-running service (see ``sandbox.local_service``)."""
        from sandbox.local_service import start_local_service  # httpx: on first use

        self._check_alive()
        return await start_local_service(self, spec)

    async def set_command_env(self, env: dict[str, str], *, host_app: Any = None) -> None:
        """Every later ``exec`` gets ``env``; with ``host_app``, each command reaches
        it at ``{host_url}`` (see ``sandbox.local_command_access``)."""
        from sandbox.local_command_access import CommandAccess  # uvicorn: on first use

        self._check_alive()
        previous, self._access = self._access, None
        if previous is not None:
            await previous.stop()
        access = await CommandAccess.start(self, env, host_app)
        if not self._alive:  # stopped meanwhile
            await access.stop()
            self._check_alive()
        self._access = access

    def _check_alive(self) -> None:
        if not self._alive:
            raise SandboxError("The sandbox is stopped", details={"sandboxId": self._id})

    def _log(self, message: str) -> None:
        self._provider._log(self.session_id, self._id, message)


class LocalSandboxProvider:
    """Sandboxes as directories of this machine, isolated by bubblewrap when possible.

    ``isolation``: "auto" (bubblewrap if it works here, else none), "bwrap"
    (raise ``BwrapUnavailable`` if it does not) or "none". ``hidden_paths`` are
    more host directories a bwrap sandbox must not see (the server's data and
    config directories). ``limits`` bound each command (``ResourceLimits``);
    ``uid_base`` is the first host uid of the sessions' users when the server
    runs as root. ``allow_file_repos`` lets ``create`` clone ``file://`` URLs:
    for tests only.
    """

    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        isolation: str = "auto",
        log_limit: int = 1000,
        hidden_paths: Sequence[Path | str] = (),
        allow_file_repos: bool = False,
        clone_timeout: float = 600.0,
        max_read_bytes: int = MAX_READ_BYTES,
        network: bool = True,
        limits: ResourceLimits | None = None,
        uid_base: int = DEFAULT_UID_BASE,
    ) -> None:
        # Resolved: the workspace appears at this path inside the sandbox.
        self.root = Path(root).resolve()
        self.network = network
        self.limits = limits or ResourceLimits()
        if not 0 < uid_base <= 2**32 - 2 - (1 << 20):
            raise ValueError(f"uid_base must leave room for 2**20 uids below 2**32; got {uid_base}")
        self.uid_base = uid_base
        self.log_limit = log_limit
        self.max_read_bytes = max_read_bytes
        self._allow_file_repos = allow_file_repos
        self._clone_timeout = clone_timeout
        # Start-up work, before the event loop serves anything: a few mkdirs
        # and, for "auto", one bwrap probe.
        self._layout = WorkspaceLayout(self.root)
        self._layout.prepare()
        self._isolation = self._choose_isolation(isolation, hidden_paths)
        self._bash = shutil.which("bash") or "/bin/bash"
        self._git = shutil.which("git") or "git"
        self._path = sandbox_path(self._isolation.visible_path)
        self._sandboxes: dict[str, LocalSandbox] = {}
        self._logs: OrderedDict[str, deque[str]] = OrderedDict()
        # Sessions whose create is under way: sweep leaves them alone, since
        # the caller's list of live sessions may predate them.
        self._starting: Counter[str] = Counter()

    @property
    def isolation(self) -> str:
        """ "bwrap" or "none": the server refuses "none" unless told it is fine."""
        return self._isolation.name

    # ------------------------------------------------------------------ lifecycle

    async def create(
        self,
        session_id: str,
        *,
        repo: str | None = None,
        git_token: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> LocalSandbox:
        """Make the session's workspace, empty or with a clone of ``repo``."""
        _check_id(session_id, "session id")
        # Refuse a bad repository before making anything.
        source = parse_repo(repo, allow_file=self._allow_file_repos) if repo else None
        if source is not None and git_token:
            check_token(git_token)
        self._starting[session_id] += 1
        try:
            return await self._create(session_id, source, git_token, on_progress)
        finally:
            self._starting[session_id] -= 1
            if not self._starting[session_id]:
                del self._starting[session_id]

    async def attach(self, session_id: str, sandbox_id: str) -> LocalSandbox | None:
        """The live sandbox ``sandbox_id`` of the session, or None when it is gone."""
        if not (SAFE_ID.match(session_id) and SAFE_ID.match(sandbox_id)):
            return None
        current = self._sandboxes.get(session_id)
        if current is not None and current.id == sandbox_id and current._alive:
            return current if await current.is_alive() else None
        meta = await asyncio.to_thread(self._layout.live_meta, session_id)
        if meta.get("sandboxId") != sandbox_id:
            return None
        sandbox = await self._register(session_id, sandbox_id, self._layout.workspace(session_id))
        self._log(session_id, sandbox_id, "reattached")
        return sandbox

    async def pause(self, sandbox: Sandbox) -> str:
        """Kill the sandbox's processes and move its workspace into a snapshot."""
        if not isinstance(sandbox, LocalSandbox) or sandbox._provider is not self:
            raise SandboxError("This sandbox does not belong to the local provider")
        session_id = sandbox.session_id
        meta = await asyncio.to_thread(self._layout.live_meta, session_id)
        if not sandbox._alive or meta.get("sandboxId") != sandbox.id:
            raise SandboxError("The sandbox is not running", details={"sandboxId": sandbox.id})
        await sandbox._stop()
        if self._sandboxes.get(session_id) is sandbox:
            del self._sandboxes[session_id]
        snapshot_id = _new_id("snap")
        try:
            await asyncio.to_thread(self._layout.move_to_snapshot, session_id, snapshot_id)
        except OSError as exc:
            self._log(session_id, sandbox.id, f"pause failed: {exc.strerror or exc}")
            raise SandboxError(f"Could not snapshot the workspace: {exc.strerror or exc}") from exc
        self._log(session_id, sandbox.id, f"paused to snapshot {snapshot_id}")
        return snapshot_id

    async def resume(self, session_id: str, snapshot_id: str) -> LocalSandbox:
        """Move the snapshot back into a live workspace under a new sandbox id.

        Raises ``SnapshotLost`` when the snapshot is gone. If an earlier resume
        of this snapshot already moved it back (and its caller never recorded
        that, say the server crashed), that workspace is resumed instead.
        """
        _check_id(session_id, "session id")
        if not SAFE_ID.match(snapshot_id):
            raise SnapshotLost(details={"snapshotId": snapshot_id})
        sandbox_id = _new_id("local")
        try:
            workspace = await asyncio.to_thread(
                self._layout.restore_snapshot, session_id, snapshot_id, sandbox_id
            )
        except SandboxError as exc:
            self._log(session_id, None, f"resume from {snapshot_id} failed: {exc.message}")
            raise
        except OSError as exc:
            self._log(session_id, None, f"resume from {snapshot_id} failed: {exc.strerror or exc}")
            raise SandboxError(f"Could not restore the snapshot: {exc.strerror or exc}") from exc
        previous = self._sandboxes.get(session_id)
        if previous is not None and previous._alive:
            # Only after a repeated resume: the earlier handle gives way to this one.
            await previous._stop()
        sandbox = await self._register(session_id, sandbox_id, workspace)
        self._log(session_id, sandbox_id, f"resumed from snapshot {snapshot_id}")
        return sandbox

    async def terminate(
        self, session_id: str, sandbox_id: str | None, snapshot_id: str | None
    ) -> None:
        """Kill the session's processes and delete its workspace and snapshots.

        Everything of the session goes, whatever the ids say: a terminated
        session has no use for any of it. Idempotent.
        """
        if not SAFE_ID.match(session_id):
            return
        await self._drop(session_id)
        self._log(session_id, sandbox_id, "terminated")

    async def logs(self, session_id: str, sandbox_id: str | None, tail: int) -> list[str]:
        """The session's recent provider log lines, every sandbox id it had included
        (each line names its sandbox), so a pause and resume read as one story."""
        lines = self._logs.get(session_id)
        if not lines or tail <= 0:
            return []
        return list(lines)[-tail:]

    async def sweep(self, live_session_ids: set[str]) -> int:
        """Delete workspaces and snapshots of sessions not in ``live_session_ids``
        (killing their processes); return how many sessions were swept.

        A session whose ``create`` is under way here is spared: it may have been
        made after the caller listed the live ones.
        """
        stale = await asyncio.to_thread(self._layout.sessions_not_in, live_session_ids)
        swept = 0
        for session_id in stale:
            if session_id in self._starting:
                continue
            await self._drop(session_id)
            self._log(session_id, None, "swept: the session no longer exists")
            swept += 1
        return swept

    async def close(self) -> None:
        """Kill every running process; workspaces stay for a later ``attach``."""
        sandboxes = list(self._sandboxes.values())
        self._sandboxes.clear()
        await asyncio.gather(*(sandbox._stop() for sandbox in sandboxes))

    # ------------------------------------------------------------------ helpers

    def _choose_isolation(self, isolation: str, hidden_paths: Sequence[Path | str]) -> Isolation:
        if isolation not in ("auto", "bwrap", "none"):
            raise ValueError(f"isolation must be auto, bwrap or none; got {isolation!r}")
        tools = isolation_tools()
        if isolation == "none":
            return NoIsolation(tools["prlimit"], self.limits)
        bwrap, prlimit, setpriv = tools["bwrap"], tools["prlimit"], tools["setpriv"]
        if bwrap is None or prlimit is None or not bwrap_available():
            if isolation == "auto":
                return NoIsolation(prlimit, self.limits)
            if bwrap is None:
                raise BwrapUnavailable(
                    "The local sandbox needs bubblewrap (bwrap), which is not installed: "
                    "install it (apt install bubblewrap, dnf install bubblewrap) or choose isolation 'none'"
                )
            if prlimit is None or (setpriv is None and os.geteuid() == 0):
                raise BwrapUnavailable(
                    "The local sandbox needs prlimit and setpriv (util-linux) beside bubblewrap: "
                    "install util-linux or choose isolation 'none'"
                )
            raise BwrapUnavailable(
                "bubblewrap (bwrap) is installed but cannot create a sandbox here "
                "(it must be 0.8 or newer, and user namespaces allowed for a non-root server); "
                "fix that or choose isolation 'none'"
            )
        return BwrapIsolation(
            bwrap,
            prlimit,
            setpriv,
            hidden=hidden_directories(self.root, hidden_paths),
            network=self.network,
            limits=self.limits,
        )

    async def _register(self, session_id: str, sandbox_id: str, workspace: Path) -> LocalSandbox:
        """A handle on the session's workspace, its user and ``/etc`` files ready."""
        if self._isolation.name == "bwrap":
            user = sandbox_user(session_id, self.uid_base)
        else:  # no isolation: commands run as the server's own user
            user = SandboxUser(os.getuid(), os.getgid(), switch=False)
        etc_files = await asyncio.to_thread(self._prepare, session_id, workspace, user)
        sandbox = LocalSandbox(
            self, session_id, sandbox_id, workspace, user=user, etc_files=etc_files
        )
        self._sandboxes[session_id] = sandbox
        return sandbox

    def _prepare(self, session_id: str, workspace: Path, user: SandboxUser) -> dict[str, Path]:
        """Write the session's generated ``/etc`` files and give the workspace
        to the sandbox user (a workspace from before sandbox users existed, or
        a new one). Blocking: run it in a thread."""
        if user.switch and workspace.stat().st_uid != user.uid:
            chown_tree(workspace, user.uid, user.gid)
        return write_identity(self._layout.session_dir(session_id) / "etc", user, str(workspace))

    async def _create(
        self,
        session_id: str,
        source: RepoSource | None,
        git_token: str | None,
        on_progress: ProgressCallback | None,
    ) -> LocalSandbox:
        await _progress(on_progress, "creating sandbox")
        sandbox_id = _new_id("local")
        try:
            workspace = await asyncio.to_thread(self._layout.make_workspace, session_id, sandbox_id)
            sandbox = await self._register(session_id, sandbox_id, workspace)
            self._log(session_id, sandbox_id, f"created ({self.isolation} isolation)")
            if source is not None:
                await _progress(on_progress, f"cloning {source.display}")
                await self._clone(sandbox, source, git_token)
        except BaseException as exc:
            # Cancelled or failed: no half-made workspace stays behind.
            await self._drop(session_id)
            if isinstance(exc, OSError):
                self._log(session_id, sandbox_id, f"create failed: {exc.strerror or exc}")
                raise SandboxError(
                    f"Could not create the workspace: {exc.strerror or exc}"
                ) from exc
            raise
        return sandbox

    async def _clone(self, sandbox: LocalSandbox, source: RepoSource, token: str | None) -> None:
        workspace = str(sandbox.workspace)
        argv = sandbox.command_argv(
            clone_argv(self._git, source),
            read_only=[source.local_path] if source.local_path else (),
        )
        started = time.monotonic()
        result = await run_process(
            argv,
            env=clone_env(sandbox.command_env(), source, token),
            cwd=workspace,
            timeout=self._clone_timeout,
            processes=sandbox._processes,
            max_output_bytes=16_000,
        )
        if result.exit_code != 0:
            message = clone_failure_message(
                source, result.stderr, token, timed_out=result.timed_out
            )
            sandbox._log(
                f"clone failed (exit {result.exit_code}): {redact(result.stderr.strip(), token)[-500:]}"
            )
            raise SandboxError(message, details={"repo": source.display})
        if token and await asyncio.to_thread(_config_holds_token, sandbox.workspace, token):
            # Never expected (the token only ever travels in the environment),
            # but a workspace holding it must not be handed to the agent.
            sandbox._log("clone failed: .git/config held a credential")
            raise SandboxError(
                f"Could not clone {source.display}: git stored a credential in the workspace"
            )
        sandbox._log(f"cloned {source.display} in {time.monotonic() - started:.2f}s")

    async def _drop(self, session_id: str) -> None:
        """Kill the session's processes and delete its directories."""
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox._stop()
        else:
            # After a restart there is no handle; without bwrap, processes may remain.
            await asyncio.to_thread(kill_processes_in, str(self._layout.session_dir(session_id)))
        await asyncio.to_thread(self._layout.delete_session, session_id)

    def _log(self, session_id: str, sandbox_id: str | None, message: str) -> None:
        lines = self._logs.get(session_id)
        if lines is None:
            lines = self._logs[session_id] = deque(maxlen=self.log_limit)
            while len(self._logs) > _MAX_LOGGED_SESSIONS:
                self._logs.popitem(last=False)
        else:
            self._logs.move_to_end(session_id)
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines.append(f"{stamp} {sandbox_id or '-'}: {message}")


def _config_holds_token(workspace: Path, token: str) -> bool:
    try:
        config = (workspace / ".git" / "config").read_text(errors="replace")
    except OSError:
        return False
    return redact(config, token) != config or "extraheader" in config.lower()


def _check_id(value: str, what: str) -> None:
    # Ids become directory names.
    if not SAFE_ID.match(value):
        raise SandboxError(f"Invalid {what}", details={what.replace(" ", ""): value})


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _shorten(command: str) -> str:
    flat = " ".join(command.split())
    return flat if len(flat) <= _COMMAND_LOG_CHARS else flat[: _COMMAND_LOG_CHARS - 3] + "..."


async def _progress(on_progress: ProgressCallback | None, message: str) -> None:
    if on_progress is not None:
        await on_progress(message)
