"""How the local sandbox starts a process: under bubblewrap, or directly.

Under bubblewrap (``bwrap``) a command sees the host's filesystem read-only,
its own workspace read-write, a private ``/tmp``, fresh ``/proc`` and ``/dev``,
its own PID namespace (nothing of the host's processes, nothing left running
after it), and no capabilities, even when the server runs as root. A few host
directories are replaced by empty ones: the sandboxes root (other sessions'
workspaces), the server user's home (dotfiles, SSH keys, cloud credentials),
``/run`` (service sockets) and any the caller adds.

The network is deliberately shared with the host: ``pip install`` and
``git fetch`` must work. That also means a command can reach services on the
host's loopback interface; run the server where that is acceptable, or use the
Modal provider.

Without bubblewrap ("none") a command runs as the server's user with the
server's view of the filesystem: only the environment is scrubbed. The server
refuses that mode unless told ``--unsafe-local-sandbox``.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

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


def minimal_env(home: str | os.PathLike[str], path: str) -> dict[str, str]:
    """The whole environment of a sandboxed command, built from scratch.

    Nothing else of the server's environment is passed on: it holds the model
    API key, the database URL and other secrets. ``path`` comes from
    ``sandbox_path()``, read once at start-up.
    """
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "USER": _user_name(),
    }


def sandbox_path() -> str:
    """The server's PATH without the server's own virtualenv: a ``pip install``
    in the sandbox must not land in the server's packages."""
    own_bin = os.path.join(sys.prefix, "bin") if sys.prefix != sys.base_prefix else None
    entries = [
        p for p in os.environ.get("PATH", _DEFAULT_PATH).split(os.pathsep) if p and p != own_bin
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

    def wrap(
        self, workspace: str, argv: Sequence[str], *, read_only: Sequence[str] = ()
    ) -> list[str]:
        """The argv that runs ``argv`` in ``workspace``; ``read_only`` lists extra
        host paths the command must be able to read (a local repository to clone)."""
        ...


class NoIsolation:
    """Runs commands directly, as the server's user."""

    name = "none"

    def wrap(
        self, workspace: str, argv: Sequence[str], *, read_only: Sequence[str] = ()
    ) -> list[str]:
        return list(argv)


@dataclass(frozen=True)
class BwrapIsolation:
    """Runs commands under bubblewrap (see the module docstring for the jail)."""

    bwrap: str
    hidden: tuple[str, ...] = field(default=())  # host directories replaced by an empty tmpfs
    # False: a network namespace of its own (loopback only), so commands cannot
    # reach the server, its database or anything else on the host's network.
    network: bool = True
    name: str = "bwrap"

    def wrap(
        self, workspace: str, argv: Sequence[str], *, read_only: Sequence[str] = ()
    ) -> list[str]:
        args = [
            self.bwrap,
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--tmpfs", "/run",
            # DNS may live under /run (systemd-resolved's stub resolv.conf)
            "--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve",
        ]  # fmt: skip
        # Parents before children, so a hidden directory inside another one is
        # created in the first tmpfs.
        for path in sorted(self.hidden, key=lambda p: p.count("/")):
            args += ["--tmpfs", path]
        for path in read_only:
            args += ["--ro-bind", path, path]
        args += [
            "--bind", workspace, workspace,
            "--chdir", workspace,
            "--unshare-pid",
            "--unshare-ipc",
            *(() if self.network else ("--unshare-net",)),
            "--die-with-parent",
            "--new-session",
            # As root, bwrap would keep every capability: CAP_SYS_ADMIN alone
            # could remount / read-write.
            "--cap-drop", "ALL",
            "--",
            *argv,
        ]  # fmt: skip
        return args


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


@functools.cache
def bwrap_available() -> bool:
    """Whether bubblewrap is installed and can build a sandbox here.

    Being on PATH is not enough (containers often forbid the namespaces it
    needs), so this runs one tiny sandbox, once per process: call it at
    start-up, not on the event loop.
    """
    path = shutil.which("bwrap")
    if path is None:
        return False
    with tempfile.TemporaryDirectory(prefix="agent-tui-bwrap-probe-") as workspace:
        argv = BwrapIsolation(path).wrap(workspace, ["/bin/sh", "-c", "exit 0"])
        try:
            done = subprocess.run(
                argv,
                env=minimal_env(workspace, sandbox_path()),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0
