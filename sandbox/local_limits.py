"""Resource bounds of the local sandbox: rlimits per process, a size bound per workspace.

cgroups v2 would bound a whole session's memory and processes together, but it
needs a delegated cgroup with the ``memory`` and ``pids`` controllers, which
neither these machines (a v1/v2 hybrid whose v2 tree only has ``hugetlb``) nor
most unprivileged setups offer. Every bound here works without one:

- processes: ``RLIMIT_NPROC``. The kernel counts it per user (per user
  namespace level), and a root server gives each session a user id of its own
  (``sandbox.local_identity``), so the count is the session's own processes;
- memory: ``RLIMIT_DATA`` per process (heap and private writable mappings).
  Unlike ``RLIMIT_AS`` it leaves address-space reservations alone, which Node,
  the JVM and Go make far beyond what they use;
- CPU time: ``RLIMIT_CPU`` per process (SIGXCPU, then SIGKILL 5 s later).
  A long-running service (``opencode serve``) adds up CPU time over a whole
  session, so services get ``service_cpu_seconds`` instead (none by default,
  see ``ResourceLimits.for_service``); every other bound applies to them too,
  but for a service with ``ServiceSpec.shell_bounds`` (OpenCode): no memory
  bound for it, both command bounds back on each command its shell runs;
- file size: ``RLIMIT_FSIZE`` per file (SIGXFSZ, or ``EFBIG`` for programs
  that ignore the signal, Python among them);
- no core dumps (they would land in the workspace);
- workspace size: measured while a command runs and after it (see
  ``WorkspaceWatch`` in ``sandbox.local``); the command is stopped when the
  workspace grows past the bound. ``/tmp`` is a tmpfs mount sized to the
  memory bound, ``/dev/shm`` a 64 MiB one (see ``sandbox.local_rootfs``).

The limits are applied by ``prlimit`` (util-linux) inside the sandbox, as the
last step before the command starts, so they cover every process the
command starts and no process can raise them again (hard = soft).
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import time
from dataclasses import dataclass

from sandbox.base import ExecResult

__all__ = ["ResourceLimits", "WorkspaceMeter", "explain_limit", "workspace_usage"]

_MIB = 1024 * 1024
# Grace between SIGXCPU (catchable) and SIGKILL.
_CPU_GRACE_SECONDS = 5
_SIGXCPU_EXIT = 128 + 24
_SIGXFSZ_EXIT = 128 + 25
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|out of memory|std::bad_alloc|"
    r"failed to reserve|memory allocation of \d+ bytes failed",
    re.IGNORECASE,
)
_NO_FORK = re.compile(r"fork: (retry: )?Resource temporarily unavailable|BlockingIOError")
_BASH_NO_FORK = "fork: retry: Resource temporarily unavailable"


@dataclass(frozen=True)
class ResourceLimits:
    """Bounds of what one sandboxed command may use; 0 means no bound."""

    max_processes: int = 512  # processes of the session at once
    memory_mib: int = 2048  # data segment of each process; also sizes /tmp
    cpu_seconds: int = 600  # CPU time of each process
    max_file_mib: int = 1024  # size of each file written
    workspace_mib: int = 5120  # the whole workspace
    service_cpu_seconds: int = 0  # CPU time of each process of a long-running service

    def __post_init__(self) -> None:
        for name in (
            "max_processes",
            "memory_mib",
            "cpu_seconds",
            "max_file_mib",
            "workspace_mib",
            "service_cpu_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (no bound) or positive")

    def for_service(self) -> ResourceLimits:
        """The bounds of a long-running service (``Sandbox.start_service``).

        ``cpu_seconds`` bounds one command; a service lives as long as its
        sandbox and adds up CPU time over every turn, so it gets
        ``service_cpu_seconds`` (0: none). Processes, memory, file size and
        the workspace stay bounded. What the service starts inherits these.
        """
        return dataclasses.replace(self, cpu_seconds=self.service_cpu_seconds)

    @property
    def workspace_bytes(self) -> int:
        """The workspace bound in bytes; 0 for none."""
        return self.workspace_mib * _MIB

    @property
    def tmpfs_bytes(self) -> int:
        """Size of the sandbox's ``/tmp``: it lives in memory."""
        return (self.memory_mib or 1024) * _MIB

    def prlimit_argv(self, prlimit: str, *, processes: bool = True) -> list[str]:
        """``prlimit`` options that set these bounds for the command after ``--``.

        ``processes=False`` leaves ``RLIMIT_NPROC`` alone: without a user of
        the sandbox's own (no isolation) it would count all of the server
        user's processes.
        """
        argv = [prlimit, "--core=0"]
        if self.max_processes and processes:
            argv.append(f"--nproc={self.max_processes}")
        if self.memory_mib:
            argv.append(f"--data={self.memory_mib * _MIB}")
        if self.cpu_seconds:
            argv.append(f"--cpu={self.cpu_seconds}:{self.cpu_seconds + _CPU_GRACE_SECONDS}")
        if self.max_file_mib:
            argv.append(f"--fsize={self.max_file_mib * _MIB}")
        return [*argv, "--"]


def explain_limit(result: ExecResult, limits: ResourceLimits) -> str | None:
    """A line saying which bound a failed command probably ran into, or None.

    The kernel does not say which rlimit stopped a process, so this reads the
    exit status (SIGXCPU, SIGXFSZ) and the usual messages of programs that
    could not allocate memory or fork.
    """
    if result.timed_out:
        return None
    output = result.stderr[-4000:] + result.stdout[-2000:]
    failed = result.exit_code != 0
    # bash names these two signals, and its failed forks, itself: a note even
    # when a later command of the line succeeds.
    if limits.cpu_seconds and (
        result.exit_code == _SIGXCPU_EXIT or "CPU time limit exceeded" in output
    ):
        return (
            f"a process used its {limits.cpu_seconds} s of CPU time and was stopped "
            "(LOCAL_SANDBOX_CPU_SECONDS)"
        )
    if limits.max_file_mib and (
        result.exit_code == _SIGXFSZ_EXIT
        or "File size limit exceeded" in output
        or (failed and "File too large" in output)
    ):
        return (
            f"a file reached the {limits.max_file_mib} MiB size bound (LOCAL_SANDBOX_MAX_FILE_MIB)"
        )
    if limits.max_processes and (_BASH_NO_FORK in output or (failed and _NO_FORK.search(output))):
        return (
            f"no new process could start: the session may run {limits.max_processes} at once "
            "(LOCAL_SANDBOX_MAX_PROCESSES)"
        )
    if failed and limits.memory_mib and _OUT_OF_MEMORY.search(output):
        return (
            f"a process could not get more memory: each may use {limits.memory_mib} MiB "
            "(LOCAL_SANDBOX_MEMORY_MIB)"
        )
    return None


def workspace_usage(path: str, *, stop_above: int = 0) -> int:
    """Bytes of disk the tree at ``path`` uses (allocated blocks, hard links once).

    Blocking: run it in a thread. With ``stop_above``, returns as soon as the
    count passes it (a runaway workspace is not walked to the end).
    """
    total = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue  # removed meanwhile, or unreadable
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                is_dir = stat.S_ISDIR(info.st_mode)
                if info.st_nlink > 1 and not is_dir:
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += info.st_blocks * 512
                if is_dir:
                    stack.append(entry.path)
        if stop_above and total > stop_above:
            break
    return total


class WorkspaceMeter:
    """How much disk a workspace uses, walked only when that may matter.

    Walking a big workspace (node_modules: tens of thousands of files) takes
    tens of milliseconds; doing it after every command would slow them all.
    The free space of the workspace's filesystem is one ``statvfs`` away, and
    the workspace cannot have grown by more than the filesystem's use did
    since the last walk. So a measurement walks the tree only when that
    growth could take the workspace past its bound, or when the last walk is
    ``rewalk_seconds`` old (space freed elsewhere at the same time could hide
    growth, for that long at most). Blocking: call it through a thread.
    """

    def __init__(self, path: str, bound: int, *, rewalk_seconds: float = 30.0) -> None:
        self.path = path
        self.bound = bound
        self.rewalk_seconds = rewalk_seconds
        self._walked: tuple[int, int, float] | None = None  # (usage, fs free, when)
        self.walks = 0

    def usage(self, *, extra: int = 0) -> int:
        """The workspace's usage in bytes: exact after a walk, else an upper bound
        known to be at most ``bound - extra`` (``extra``: bytes about to be added)."""
        free = _free_bytes(self.path)
        if self._walked is not None and free is not None:
            usage, free_then, when = self._walked
            estimate = usage + max(0, free_then - free)
            if estimate + extra <= self.bound and time.monotonic() - when < self.rewalk_seconds:
                return estimate
        usage = workspace_usage(self.path, stop_above=self.bound)
        self.walks += 1
        self._walked = (usage, free if free is not None else 0, time.monotonic())
        if free is None:
            self._walked = None  # no statvfs: walk every time
        return usage


def _free_bytes(path: str) -> int | None:
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return info.f_bfree * info.f_frsize
