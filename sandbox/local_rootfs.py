"""The filesystem a bubblewrap sandbox sees: the host's programs, a minimal ``/etc``.

Nothing of the host is visible unless listed here:

- ``SYSTEM_DIRS``, read-only: the programs and libraries (``/usr``, ``/opt``
  and the ``/bin``, ``/lib*`` links or directories beside them);
- ``/etc``: only ``ETC_ENTRIES`` (what programs read to link, resolve names,
  trust TLS certificates, know the time zone and locale), read-only, plus a
  generated ``passwd``/``group`` that name the sandbox user alone, and
  ``resolv.conf`` and the host's ``hosts`` only when the network is on. No
  ``shadow``, ``sudoers``, SSH host keys, ``ssl/private``, ``machine-id``,
  system-wide ``pip.conf``/``npmrc``/``gitconfig`` (they may hold registry
  credentials) or the server's own files;
- fresh ``/proc`` (of the sandbox's PID namespace only), ``/dev`` (null, zero,
  random, tty, ...), and ``/tmp`` (sized like the memory bound), ``/dev/shm``
  (64 MiB) and ``/run`` (16 MiB) as tmpfs mounts: they live in memory;
- ``/sys/devices/system/cpu`` (read-only: CPU counts) and nothing else of
  ``/sys``;
- an empty ``/var`` whose ``tmp`` is ``/tmp``.

``/root``, ``/home``, ``/srv``, ``/mnt``, ``/media``, the rest of ``/var`` and of
``/run`` (service sockets, PostgreSQL's among them) are absent. The workspace is
added by the caller at its host path, so absolute paths written into it survive
a pause.

Built once, at start-up (it looks at the host's ``/``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ETC_ENTRIES", "SYSTEM_DIRS", "ensure_dirs", "exposed_roots", "rootfs_args"]

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "opt", "nix")

ETC_ENTRIES = (
    # name service switch and name resolution rules (users come generated)
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "services",
    "protocols",
    "networks",
    "rpc",
    "ethertypes",
    # the dynamic linker
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    # Debian's alternatives: /usr/bin/python3, java, editor... link through it
    "alternatives",
    # TLS trust (certificates only: ssl/private stays out)
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates",
    "ca-certificates.conf",
    "pki/tls/certs",
    "pki/ca-trust/extracted",
    "crypto-policies",
    # time and locale
    "localtime",
    "timezone",
    "locale.alias",
    "locale.conf",
    "default/locale",
    # what system this is (pip, npm and build scripts ask)
    "os-release",
    "lsb-release",
    "debian_version",
    "redhat-release",
    "alpine-release",
    # shells, terminals, file types
    "shells",
    "inputrc",
    "terminfo",
    "bash.bashrc",
    "mime.types",
    "magic",
    "magic.mime",
    # language runtimes' own settings
    "python3*",
    "perl",
    "java-*",
)
# Only with the network on: the host's resolver configuration and host names.
NETWORK_ETC_ENTRIES = ("resolv.conf", "hosts")
_RUN_TMPFS_BYTES = 16 * 1024 * 1024
_SHM_TMPFS_BYTES = 64 * 1024 * 1024  # as Docker's default /dev/shm


def exposed_roots() -> list[str]:
    """Top-level host directories the sandbox sees read-only (those that exist)."""
    return [
        f"/{name}"
        for name in SYSTEM_DIRS
        if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}")
    ]


def rootfs_args(*, network: bool, tmpfs_bytes: int, etc_files: Mapping[str, Path]) -> list[str]:
    """bubblewrap options that build the sandbox's root (see the module docstring).

    ``etc_files`` maps names under ``/etc`` to generated files (``passwd``,
    ``group``, ``hosts``); the host's ``hosts`` replaces the generated one when
    the network is on.
    """
    args: list[str] = []
    for name in SYSTEM_DIRS:
        host = f"/{name}"
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            args += ["--ro-bind", host, host]
    made = {"/"}
    args += ensure_dirs("/etc", made)
    for pattern in (*ETC_ENTRIES, *(NETWORK_ETC_ENTRIES if network else ())):
        for host in sorted(glob.glob(f"/etc/{pattern}")):
            args += ensure_dirs(os.path.dirname(host), made)
            args += _expose(host)
    for name, path in etc_files.items():
        if network and name in NETWORK_ETC_ENTRIES and os.path.exists(f"/etc/{name}"):
            continue
        args += ["--ro-bind", str(path), f"/etc/{name}"]
    args += ["--symlink", "/proc/self/mounts", "/etc/mtab"]
    size = str(tmpfs_bytes)
    args += [
        "--dev", "/dev",
        "--perms", "1777", "--size", str(_SHM_TMPFS_BYTES), "--tmpfs", "/dev/shm",
        "--proc", "/proc",
        "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
        "--size", str(_RUN_TMPFS_BYTES), "--tmpfs", "/run",
    ]  # fmt: skip
    if network:
        # DNS may live under /run (systemd-resolved's stub resolv.conf)
        args += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]
    args += [*ensure_dirs("/var", made), "--symlink", "../tmp", "/var/tmp"]
    if os.path.isdir("/sys/devices/system/cpu"):
        args += ensure_dirs("/sys/devices/system", made)
        args += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    return args


def ensure_dirs(path: str, made: set[str]) -> list[str]:
    """``--dir`` options for ``path`` and its missing parents, mode 0755.

    bubblewrap makes a bind's missing parents itself, but with the mode of the
    host's directory; a 0700 parent owned by root would then bar the sandbox
    user from a path it must walk (its own workspace).
    """
    args: list[str] = []
    parts = Path(path).parts
    for depth in range(2, len(parts) + 1):
        current = os.path.join(*parts[:depth])
        if current not in made:
            made.add(current)
            args += ["--perms", "0755", "--dir", current]
    return args


def _expose(host: str) -> list[str]:
    """Options showing one ``/etc`` entry: a link into ``/usr`` stays a link
    (``localtime`` names its zone that way), anything else is bound read-only."""
    if os.path.islink(host):
        target = os.path.realpath(host)
        if target.startswith("/usr/"):
            return ["--symlink", os.readlink(host), host]
        return ["--ro-bind", target, host] if os.path.exists(target) else []
    return ["--ro-bind", host, host]
