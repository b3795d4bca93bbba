"""Who a local sandbox's commands run as: never root, and never the server.

**A server running as root** gives each session a host user id of its own,
``uid_base`` plus a hash of the session id (the same id after a pause, a
resume or a restart, so the workspace's files never need a new owner).
bubblewrap runs as root only to build the sandbox's mounts; ``setpriv`` then
switches to that user, with no capabilities, an empty bounding set and
``no_new_privs``, before the command starts.

Why not bubblewrap's own ``--unshare-user --uid 1000``: a user namespace made
by root maps its inner user to host uid 0. ``id -u`` would say 1000, but every
root-owned host file would still be readable through its owner bits
(``/etc/shadow`` included), and ``RLIMIT_NPROC`` never applies to uid 0. A real
unprivileged host uid gets the kernel's ordinary checks: other users' files by
their "other" bits only, no signal or ptrace to anything else on the host, and
a process count of its own.

**A server running as another user** cannot switch users; bubblewrap puts the
command in a user namespace mapped to the server's own (unprivileged) uid.
The sandbox's mounts then decide what it can see, as for any uid.

Inside, either way, the user is ``agent`` with the workspace as its home, from a
generated ``/etc/passwd`` and ``/etc/group`` (see ``write_identity``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SANDBOX_USER_NAME", "SandboxUser", "chown_tree", "sandbox_user", "write_identity"]

SANDBOX_USER_NAME = "agent"
# Session uids spread over this many ids above the base: a clash between two
# live sessions is unlikely, and harmless but for sharing their process count.
UID_SPAN = 1 << 20
_NOBODY = 65534


@dataclass(frozen=True)
class SandboxUser:
    """The host user a session's commands run as.

    ``switch``: the server is root, and the sandbox switches to ``uid``/``gid``
    inside (see the module docstring); else they are the server's own ids.
    """

    uid: int
    gid: int
    switch: bool


def sandbox_user(session_id: str, uid_base: int) -> SandboxUser:
    """The session's user: its own uid under a root server, the server's otherwise."""
    if os.geteuid() != 0:
        return SandboxUser(os.getuid(), os.getgid(), switch=False)
    digest = hashlib.sha256(session_id.encode()).digest()
    uid = uid_base + int.from_bytes(digest[:8], "big") % UID_SPAN
    return SandboxUser(uid, uid, switch=True)


def write_identity(directory: Path, user: SandboxUser, home: str) -> dict[str, Path]:
    """Write the sandbox's ``passwd``, ``group`` and ``hosts`` into ``directory``.

    Returns {name under /etc: file}. Blocking: call it through a thread.
    """
    directory.mkdir(mode=0o755, exist_ok=True)
    users = [("root", 0, 0, "/root"), (SANDBOX_USER_NAME, user.uid, user.gid, home)]
    if user.uid != _NOBODY:
        users.append(("nobody", _NOBODY, _NOBODY, "/nonexistent"))
    passwd = "".join(
        f"{name}:x:{uid}:{gid}:{name}:{home_dir}:"
        f"{'/bin/bash' if name == SANDBOX_USER_NAME else '/usr/sbin/nologin'}\n"
        for name, uid, gid, home_dir in users
    )
    groups = [("root", 0), (SANDBOX_USER_NAME, user.gid)]
    if user.gid != _NOBODY:
        groups.append(("nogroup", _NOBODY))
    group = "".join(f"{name}:x:{gid}:\n" for name, gid in groups)
    hosts = "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    files = {"passwd": passwd, "group": group, "hosts": hosts}
    written: dict[str, Path] = {}
    for name, text in files.items():
        path = directory / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o644)
        os.replace(tmp, path)
        written[name] = path
    return written


def chown_tree(path: Path, uid: int, gid: int) -> int:
    """Give ``path`` and everything below it to ``uid``/``gid``, symlinks not
    followed; return how many entries changed. Blocking: run it in a thread.

    For a workspace made before sandboxes had users of their own, or a file the
    server wrote for the session.
    """
    changed = 0
    for current, dirs, files in os.walk(path):
        for name in [".", *dirs, *files]:
            entry = os.path.join(current, name) if name != "." else current
            try:
                info = os.lstat(entry)
                if info.st_uid != uid or info.st_gid != gid:
                    os.lchown(entry, uid, gid)
                    changed += 1
            except OSError:
                continue  # removed meanwhile
    return changed
