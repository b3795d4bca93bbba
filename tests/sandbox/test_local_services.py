"""Services of a local sandbox, seen from inside it.

A long-running service is not bound by the per-command CPU time
(``LOCAL_SANDBOX_CPU_SECONDS``): ``opencode serve`` adds up CPU time over a
whole session. Commands keep their bound. And the service directory
(``.agent-tui/``) stays out of git."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sandbox.base import ServiceSpec
from sandbox.local import LocalSandboxProvider, ResourceLimits
from tests.sandbox.test_local import make_provider

# Writes the CPU-time rlimit it runs under (soft, hard; -1 = none), then stays up.
REPORT = """
import resource, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
open(sys.argv[1], "w").write(f"{soft} {hard}")
time.sleep(600)
"""


async def _service_cpu_limit(provider: LocalSandboxProvider) -> tuple[str, str]:
    sandbox = await provider.create("svc-limits")
    try:
        command = await sandbox.exec(
            "python3 -c 'import resource; print(*resource.getrlimit(resource.RLIMIT_CPU))'",
            timeout=60,
        )
        spec = ServiceSpec(name="report", argv=("python3", "-c", REPORT, "cpu.txt"), port=0)
        service = await sandbox.start_service(spec)
        try:
            report = sandbox.workspace / "cpu.txt"
            deadline = asyncio.get_running_loop().time() + 60
            while not (report.exists() and report.read_text()):
                assert await service.is_running(), "the service exited"
                assert asyncio.get_running_loop().time() < deadline, "no report"
                await asyncio.sleep(0.1)
            return command.stdout.strip(), report.read_text()
        finally:
            await service.stop()
    finally:
        await provider.terminate("svc-limits", sandbox.id, None)


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
async def test_a_service_has_no_cpu_bound_while_commands_keep_theirs(
    tmp_path: Path, isolation: str
) -> None:
    limits = ResourceLimits(cpu_seconds=7)
    provider = make_provider(tmp_path, isolation, limits=limits)
    try:
        command, service = await _service_cpu_limit(provider)
    finally:
        await provider.close()
    assert command == "7 12"  # soft, then SIGKILL at hard = soft + 5
    assert service == "-1 -1"


async def test_a_service_cpu_bound_can_be_set(tmp_path: Path) -> None:
    limits = ResourceLimits(cpu_seconds=7, service_cpu_seconds=86400)
    provider = make_provider(tmp_path, "bwrap", limits=limits)
    try:
        command, service = await _service_cpu_limit(provider)
    finally:
        await provider.close()
    assert (command, service) == ("7 12", "86400 86405")


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
async def test_git_never_shows_the_service_directory(tmp_path: Path, isolation: str) -> None:
    provider = make_provider(tmp_path, isolation)
    try:
        sandbox = await provider.create("svc-git")
        init = await sandbox.exec("git init -q . && echo a > a.txt", timeout=60)
        assert init.exit_code == 0, init
        service = await sandbox.start_service(
            ServiceSpec(name="idle", argv=("sleep", "600"), port=0)
        )
        try:
            assert (sandbox.workspace / ".agent-tui" / "idle.log").exists()
            status = await sandbox.exec(
                "git status --porcelain --untracked-files=all; git add -A; git ls-files --cached",
                timeout=60,
            )
        finally:
            await service.stop()
        assert status.exit_code == 0, status
        assert status.stdout.splitlines() == ["?? a.txt", "a.txt"], status
    finally:
        await provider.terminate("svc-git", None, None)
        await provider.close()
