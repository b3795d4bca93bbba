"""What the sandbox's root is built from: nothing secret, and /etc minimal."""

from __future__ import annotations

from pathlib import Path

from sandbox.local_rootfs import ETC_ENTRIES, ensure_dirs, rootfs_args

FILES = {"passwd": Path("/gen/passwd"), "group": Path("/gen/group"), "hosts": Path("/gen/hosts")}


def sources(args: list[str]) -> set[str]:
    """Host paths the options bind into the sandbox."""
    found = set()
    for index, arg in enumerate(args):
        if arg in ("--ro-bind", "--bind", "--ro-bind-try"):
            found.add(args[index + 1])
    return found


def test_no_secret_of_the_host_is_bound() -> None:
    for network in (False, True):
        bound = sources(rootfs_args(network=network, tmpfs_bytes=1 << 20, etc_files=FILES))
        for secret in ("/etc", "/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh",
                       "/etc/ssl/private", "/etc/machine-id", "/etc/pip.conf", "/etc/npmrc",
                       "/etc/gitconfig", "/root", "/home", "/var", "/run", "/sys", "/"):  # fmt: skip
            assert secret not in bound, (secret, network)
        assert {"/gen/passwd", "/gen/group"} <= bound
        assert not any(s.startswith(("/home", "/root", "/var/lib")) for s in bound)


def test_resolver_files_only_with_the_network() -> None:
    off = rootfs_args(network=False, tmpfs_bytes=1 << 20, etc_files=FILES)
    on = rootfs_args(network=True, tmpfs_bytes=1 << 20, etc_files=FILES)
    assert "/etc/resolv.conf" not in off and "/gen/hosts" in off
    if Path("/etc/resolv.conf").exists():
        assert "/etc/resolv.conf" in on
    if Path("/etc/hosts").exists():
        assert "/gen/hosts" not in on
    assert "shadow" not in " ".join(ETC_ENTRIES)


def test_parents_are_made_traversable_once() -> None:
    made = {"/"}
    args = ensure_dirs("/a/b/c", made)
    expected = [["--perms", "0755", "--dir", d] for d in ("/a", "/a/b", "/a/b/c")]
    assert args == [option for group in expected for option in group]
    assert ensure_dirs("/a/b", made) == []
