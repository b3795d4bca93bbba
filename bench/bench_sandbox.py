"""What the local sandbox's hardening costs per command (issue 12).

Rows: a trivial command (``true``) through ``LocalSandbox.exec`` without
isolation, under bubblewrap without the workspace bound, and under bubblewrap
with it (one measurement of the workspace after each command), each in a
workspace of a given number of files; and the time of one measurement of the
workspace, which sets how often it is watched while a command runs.

    python -m bench.bench_sandbox [--runs N] [--files N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import median, percentile, table
from sandbox.local import LocalSandboxProvider, ResourceLimits, bwrap_available
from sandbox.local_limits import workspace_usage


def _fill(workspace: Path, files: int) -> None:
    per_dir = 100
    for index in range(files):
        folder = workspace / "tree" / f"d{index // per_dir}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.txt").write_bytes(b"x" * 200)


async def _exec_times(isolation: str, limits: ResourceLimits, files: int, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="agent-tui-bench-sandbox-") as tmp:
        provider = LocalSandboxProvider(
            Path(tmp) / "sandboxes", isolation=isolation, network=False, limits=limits
        )
        try:
            sandbox = await provider.create("bench")
            await asyncio.to_thread(_fill, sandbox.workspace, files)
            await sandbox.exec("true", timeout=30)  # warm caches
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                result = await sandbox.exec("true", timeout=30)
                times.append((time.perf_counter() - started) * 1000)
                assert result.exit_code == 0, result
            return times
        finally:
            await provider.close()


def _scan_ms(files: int, runs: int) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="agent-tui-bench-scan-") as tmp:
        _fill(Path(tmp), files)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            workspace_usage(tmp)
            times.append((time.perf_counter() - started) * 1000)
        return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few runs, few files")
    args = parser.parse_args()
    runs, files = (5, 500) if args.quick else (args.runs, args.files)
    unbounded = ResourceLimits(workspace_mib=0)
    bounded = ResourceLimits()
    rows: list[list[object]] = []
    cases = [("none", "no isolation, rlimits only", bounded)]
    if bwrap_available():
        cases += [
            ("bwrap", "bubblewrap, no workspace bound", unbounded),
            ("bwrap", "bubblewrap, workspace bound (default)", bounded),
        ]
    else:
        print("bubblewrap is not usable here: only the unisolated row is measured")
    for count in (0, files):
        for isolation, label, limits in cases:
            times = await _exec_times(isolation, limits, count, runs)
            rows.append(
                [
                    label,
                    count,
                    f"{median(times):.1f}",
                    f"{percentile(times, 95):.1f}",
                ]
            )
    print(
        table(
            f"`true` through LocalSandbox.exec, {runs} runs each (ms)",
            ["mode", "files in workspace", "median", "p95"],
            rows,
        )
    )
    scans = await asyncio.to_thread(_scan_ms, files, max(3, runs // 5))
    print()
    print(
        table(
            "one measurement of the workspace (ms); watched every max(1 s, 10 x this)",
            ["files", "median", "max"],
            [[files, f"{median(scans):.1f}", f"{max(scans):.1f}"]],
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
