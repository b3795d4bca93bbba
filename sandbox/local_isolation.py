"""How the local sandbox starts a process: under bubblewrap, or directly.

Under bubblewrap (``bwrap``) a command sees a minimal root built from the host
(``sandbox.local_rootfs``: the host's programs read-only, a minimal ``/etc``,
private ``/tmp``, ``/proc`` and ``/dev``), its own workspace read-write, and
nothing else: no other session's workspace, no ``/root`` or ``/home``, no
service sockets, not the server's data or config. It runs in its own PID,
IPC and UTS namespaces (nothing of the host's processes, nothing left running
after it), with no capabilities, as an unprivileged user
(``sandbox.local_identity``: never uid 0, even when the server is root), under
the resource bounds of ``sandbox.local_limits``.

The network is a switch. Off (``serve``'s default), a command gets a network
namespace with a loopback of its own: it cannot reach the server, its
database or any other host. On (the embedded app's default: ``pip install``
and ``git fetch`` work), it shares the host's network, services on the host's
loopback interface included.

Without bubblewrap ("none") a command runs as the server's user with the
server's view of the filesystem: only the environment is scrubbed and the
rlimits applied. The server refuses that mode unless told
``--unsafe-local-sandbox``.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sandbox.local_identity import SANDBOX_USER_NAME, SandboxUser, write_identity
from sandbox.local_limits import ResourceLimits
from sandbox.local_rootfs import ensure_dirs, exposed_roots, rootfs_args

__all__ = [
    "BwrapIsolation",
    "Isolation",
    "NoIsolation",
    "bwrap_available",
    "hidden_directories",
    "minimal_env",
    "sandbox_path",
]

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What the switch to the sandbox user needs from bwrap (run as root): to set
# the ids, and to empty the capability bounding set before exec.
_SWITCH_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")


def minimal_env(
    home: str | os.PathLike[str], path: str, *, user: str | None = None
) -> dict[str, str]:
    """The whole environment of a sandboxed command, built from scratch.

    Nothing else of the server's environment is passed on: it holds the model
    API key, the database URL and other secrets. ``path`` comes from
    ``sandbox_path()``, read once at start-up; ``user`` defaults to the
    server's user name (no isolation).
    """
    name = user or _user_name()
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "USER": name,
        "LOGNAME": name,
    }


def sandbox_path(visible: Callable[[str], bool] | None = None) -> str:
    """The server's PATH without the server's own virtualenv (a ``pip install``
    in the sandbox must not land in the server's packages), and without the
    directories the sandbox does not see when ``visible`` says so."""
    own_bin = os.path.join(sys.prefix, "bin") if sys.prefix != sys.base_prefix else None
    entries = [
        p
        for p in os.environ.get("PATH", _DEFAULT_PATH).split(os.pathsep)
        if p and p != own_bin and (visible is None or visible(p))
    ]
    return os.pathsep.join(entries) or _DEFAULT_PATH


@functools.cache
def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return "sandbox"


class Isolation(Protocol):
    """Turns a command line into the one that runs it isolated (or not)."""

    @property
    def name(self) -> str:
        """ "bwrap" or "none"."""
        ...

    @property
    def user_name(self) -> str | None:
        """The user name commands see (``USER``); None: the server's."""
        ...

    def visible_path(self, path: str) -> bool:
        """Whether a host directory (of ``PATH``) exists for sandboxed commands."""
        ...

    def wrap(
        self,
        workspace: str,
        argv: Sequence[str],
        *,
        user: SandboxUser,
        etc_files: Mapping[str, Path],
        read_only: Sequence[str] = (),
        service: bool = False,
        limits: ResourceLimits | None = None,
    ) -> list[str]:
        """The argv that runs ``argv`` in ``workspace`` as ``user``.

        ``etc_files`` are the generated ``/etc`` files of ``write_identity``;
        ``read_only`` lists extra host paths the command must be able to read
        (a local repository to clone). ``service``: a long-running service,
        bounded by ``ResourceLimits.for_service()`` instead of the command bounds;
        ``limits`` replaces either (a service with ``ServiceSpec.shell_bounds``).
        """
        ...


@dataclass(frozen=True)
class NoIsolation:
    """Runs commands directly, as the server's user, under the rlimits only."""

    prlimit: str | None = None
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    name: str = "none"
    user_name: str | None = None

    def visible_path(self, path: str) -> bool:
        return True

    def wrap(
        self,
        workspace: str,
        argv: Sequence[str],
        *,
        user: SandboxUser,
        etc_files: Mapping[str, Path],
        read_only: Sequence[str] = (),
        service: bool = False,
        limits: ResourceLimits | None = None,
    ) -> list[str]:
        if self.prlimit is None:
            return list(argv)
        limits = limits or (self.limits.for_service() if service else self.limits)
        # No process bound: it would count every process of the server's user.
        return [*limits.prlimit_argv(self.prlimit, processes=False), *argv]


@dataclass(frozen=True)
class BwrapIsolation:
    """Runs commands under bubblewrap (see the module docstring for the jail).

    ``prlimit`` and, when the server is root, ``setpriv`` (both util-linux)
    run inside the sandbox: the first sets the bounds, the second becomes the
    sandbox user.
    """

    bwrap: str
    prlimit: str
    setpriv: str | None = None
    hidden: tuple[str, ...] = field(default=())  # host directories replaced by an empty tmpfs
    # False: a network namespace of its own (loopback only), so commands cannot
    # reach the server, its database or anything else on the host's network.
    network: bool = True
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    name: str = "bwrap"
    user_name: str | None = SANDBOX_USER_NAME

    def visible_path(self, path: str) -> bool:
        real = os.path.realpath(path)
        return any(real == root or real.startswith(root + "/") for root in exposed_roots())

    def wrap(
        self,
        workspace: str,
        argv: Sequence[str],
        *,
        user: SandboxUser,
        etc_files: Mapping[str, Path],
        read_only: Sequence[str] = (),
        service: bool = False,
        limits: ResourceLimits | None = None,
    ) -> list[str]:
        if user.switch and self.setpriv is None:
            raise RuntimeError("a root server needs setpriv (util-linux) to switch users")
        args = [
            self.bwrap,
            *rootfs_args(
                network=self.network, tmpfs_bytes=self.limits.tmpfs_bytes, etc_files=etc_files
            ),
        ]
        # Only what lies under a directory the sandbox sees needs hiding (the
        # server's data kept under /opt, say); parents before children.
        roots = exposed_roots()
        for path in sorted(self.hidden, key=lambda p: p.count("/")):
            if any(path == root or path.startswith(root + "/") for root in roots):
                args += ["--tmpfs", path]
        made: set[str] = set()
        for path in read_only:
            args += ensure_dirs(os.path.dirname(path), made)
            args += ["--ro-bind", path, path]
        args += ensure_dirs(os.path.dirname(workspace), made)
        args += [
            "--bind", workspace, workspace,
            "--chdir", workspace,
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--hostname", "sandbox",
            "--unshare-cgroup-try",
            *(() if self.network else ("--unshare-net",)),
            "--die-with-parent",
            "--new-session",
            # As root, bwrap would keep every capability: CAP_SYS_ADMIN alone
            # could remount / read-write.
            "--cap-drop", "ALL",
        ]  # fmt: skip
        if user.switch:
            for cap in _SWITCH_CAPS:
                args += ["--cap-add", cap]
        else:
            args += ["--unshare-user"]
        limits = limits or (self.limits.for_service() if service else self.limits)
        args += ["--", *limits.prlimit_argv(self.prlimit)]
        if user.switch:
            args += [
                self.setpriv,
                f"--reuid={user.uid}",
                f"--regid={user.gid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]  # type: ignore[list-item]
        return [*args, *argv]


def hidden_directories(root: Path, extra: Sequence[os.PathLike[str] | str] = ()) -> tuple[str, ...]:
    """Directories a bwrap sandbox must not see: the sandboxes root, the server
    user's home, and ``extra`` (those that exist)."""
    candidates = [root, Path.home(), *map(Path, extra)]
    hidden: list[str] = []
    for path in candidates:
        real = os.path.realpath(path)
        if real != "/" and os.path.isdir(real) and real not in hidden:
            hidden.append(real)
    return tuple(hidden)


def isolation_tools() -> dict[str, str | None]:
    """Paths of the programs the isolation uses (None when missing)."""
    return {name: shutil.which(name) for name in ("bwrap", "prlimit", "setpriv")}


@functools.cache
def bwrap_available() -> bool:
    """Whether bubblewrap (and the util-linux tools it is used with) can build
    a sandbox here, as the server's user would use it.

    Being on PATH is not enough (containers often forbid the namespaces it
    needs), so this runs one tiny sandbox, once per process: call it at
    start-up, not on the event loop.
    """
    tools = isolation_tools()
    is_root = os.geteuid() == 0
    if tools["bwrap"] is None or tools["prlimit"] is None or (is_root and not tools["setpriv"]):
        return False
    isolation = BwrapIsolation(tools["bwrap"], tools["prlimit"], tools["setpriv"], network=False)
    with tempfile.TemporaryDirectory(prefix="agent-tui-bwrap-probe-") as tmp:
        workspace = os.path.join(tmp, "workspace")
        os.mkdir(workspace)
        user = SandboxUser(65534, 65534, switch=True) if is_root else None
        if user is None:
            user = SandboxUser(os.getuid(), os.getgid(), switch=False)
        else:
            os.chown(workspace, user.uid, user.gid)
        etc_files = write_identity(Path(tmp) / "etc", user, workspace)
        argv = isolation.wrap(
            workspace, ["/bin/sh", "-c", "exit 0"], user=user, etc_files=etc_files
        )
        try:
            done = subprocess.run(
                argv,
                env=minimal_env(workspace, sandbox_path(), user=SANDBOX_USER_NAME),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0
