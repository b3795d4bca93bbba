"""The sandbox user: its uid, its generated /etc files, and handing files over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.local_identity import UID_SPAN, SandboxUser, chown_tree, sandbox_user, write_identity


def test_a_root_server_gives_each_session_a_stable_uid_of_its_own() -> None:
    if os.geteuid() != 0:
        assert sandbox_user("a", 1_000_000) == SandboxUser(os.getuid(), os.getgid(), switch=False)
        return
    first = sandbox_user("session-a", 1_000_000)
    assert first == sandbox_user("session-a", 1_000_000)  # same after a restart
    assert first.switch and first.uid == first.gid
    assert 1_000_000 <= first.uid < 1_000_000 + UID_SPAN
    uids = {sandbox_user(f"session-{i}", 1_000_000).uid for i in range(200)}
    assert len(uids) == 200


def test_generated_etc_files_name_only_the_sandbox_users(tmp_path: Path) -> None:
    files = write_identity(tmp_path / "etc", SandboxUser(1_234_567, 1_234_567, True), "/ws")
    assert set(files) == {"passwd", "group", "hosts"}
    passwd = files["passwd"].read_text().splitlines()
    assert passwd == [
        "root:x:0:0:root:/root:/usr/sbin/nologin",
        "agent:x:1234567:1234567:agent:/ws:/bin/bash",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    ]
    assert "agent:x:1234567:" in files["group"].read_text()
    assert "localhost" in files["hosts"].read_text()
    assert all(oct(f.stat().st_mode & 0o777) == "0o644" for f in files.values())


def test_chown_tree_hands_over_without_following_links(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("changing owners needs root")
    outside = tmp_path / "outside.txt"
    outside.write_text("host file")
    tree = tmp_path / "ws"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f.txt").write_text("x")
    (tree / "link").symlink_to(outside)
    assert chown_tree(tree, 1_234_567, 1_234_567) == 4
    assert (tree / "sub" / "f.txt").stat().st_uid == 1_234_567
    assert outside.stat().st_uid == 0  # the link's target is left alone
    assert chown_tree(tree, 1_234_567, 1_234_567) == 0
