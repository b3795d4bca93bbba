"""The bounds' options, the notes that name a bound, and the workspace measure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.base import ExecResult
from sandbox.local_limits import ResourceLimits, WorkspaceMeter, explain_limit, workspace_usage

LIMITS = ResourceLimits(max_processes=64, memory_mib=256, cpu_seconds=3, max_file_mib=16)


def test_prlimit_options_set_soft_and_hard_together() -> None:
    argv = LIMITS.prlimit_argv("/usr/bin/prlimit")
    assert argv == [
        "/usr/bin/prlimit",
        "--core=0",
        "--nproc=64",
        f"--data={256 * 1024 * 1024}",
        "--cpu=3:8",
        f"--fsize={16 * 1024 * 1024}",
        "--",
    ]
    assert "--nproc=64" not in LIMITS.prlimit_argv("prlimit", processes=False)
    none = ResourceLimits(0, 0, 0, 0, 0)
    assert none.prlimit_argv("prlimit") == ["prlimit", "--core=0", "--"]
    with pytest.raises(ValueError):
        ResourceLimits(memory_mib=-1)


def test_a_service_gets_the_service_cpu_bound_and_every_other_bound() -> None:
    limits = ResourceLimits(max_processes=64, memory_mib=256, cpu_seconds=3, max_file_mib=16)
    service = limits.for_service()
    assert service.cpu_seconds == 0 and "--cpu" not in " ".join(service.prlimit_argv("p"))
    assert service.prlimit_argv("p") == [
        "p",
        "--core=0",
        "--nproc=64",
        f"--data={256 * 1024 * 1024}",
        f"--fsize={16 * 1024 * 1024}",
        "--",
    ]
    bounded = ResourceLimits(cpu_seconds=3, service_cpu_seconds=86400).for_service()
    assert "--cpu=86400:86405" in bounded.prlimit_argv("p")
    assert limits.cpu_seconds == 3  # the command bounds are unchanged
    with pytest.raises(ValueError):
        ResourceLimits(service_cpu_seconds=-1)


@pytest.mark.parametrize(
    ("exit_code", "stderr", "setting"),
    [
        (152, "", "LOCAL_SANDBOX_CPU_SECONDS"),
        (0, "bash: line 1: 3 CPU time limit exceeded  python3", "LOCAL_SANDBOX_CPU_SECONDS"),
        (153, "", "LOCAL_SANDBOX_MAX_FILE_MIB"),
        (1, "OSError: [Errno 27] File too large", "LOCAL_SANDBOX_MAX_FILE_MIB"),
        (1, "MemoryError", "LOCAL_SANDBOX_MEMORY_MIB"),
        (134, "FATAL ERROR: JavaScript heap out of memory", "LOCAL_SANDBOX_MEMORY_MIB"),
        (0, "bash: fork: retry: Resource temporarily unavailable", "LOCAL_SANDBOX_MAX_PROCESSES"),
        (1, "BlockingIOError: [Errno 11]", "LOCAL_SANDBOX_MAX_PROCESSES"),
    ],
)
def test_a_hit_bound_is_named(exit_code: int, stderr: str, setting: str) -> None:
    note = explain_limit(ExecResult(exit_code, "", stderr), LIMITS)
    assert note is not None and setting in note


@pytest.mark.parametrize(
    ("exit_code", "stdout", "stderr"),
    [
        (0, "grep found: MemoryError in the log", ""),  # success: not a bound
        (1, "", "No such file or directory"),
        (2, "", "syntax error"),
    ],
)
def test_no_note_without_a_bound(exit_code: int, stdout: str, stderr: str) -> None:
    assert explain_limit(ExecResult(exit_code, stdout, stderr), LIMITS) is None
    assert explain_limit(ExecResult(-1, "", "MemoryError", timed_out=True), LIMITS) is None
    assert explain_limit(ExecResult(152, "", ""), ResourceLimits(cpu_seconds=0)) is None


def test_workspace_usage_counts_blocks_once_per_inode(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.bin").write_bytes(os.urandom(1024 * 1024))
    os.link(tmp_path / "a" / "one.bin", tmp_path / "again.bin")
    (tmp_path / "link").symlink_to("/usr")  # not followed
    used = workspace_usage(str(tmp_path))
    assert 1024 * 1024 <= used < 2 * 1024 * 1024
    assert workspace_usage(str(tmp_path / "missing")) == 0


def test_workspace_meter_walks_only_when_the_bound_may_be_passed(tmp_path: Path) -> None:
    roomy = WorkspaceMeter(str(tmp_path), bound=1 << 40)  # 1 TiB: never near
    assert roomy.usage() == 0 and roomy.walks == 1
    (tmp_path / "f.bin").write_bytes(os.urandom(64 * 1024))
    estimate = roomy.usage()
    assert roomy.walks == 1  # statvfs only
    assert estimate >= 0
    # Bytes about to be written that would not fit: walk to know exactly.
    assert roomy.usage(extra=(1 << 40) + 1) >= 64 * 1024 and roomy.walks == 2
    always = WorkspaceMeter(str(tmp_path), bound=1 << 40, rewalk_seconds=0)
    always.usage()
    always.usage()
    assert always.walks == 2
