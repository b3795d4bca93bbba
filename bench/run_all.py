"""Run every benchmark and print their tables: ``make bench``."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "bench.bench_auth",
    "bench.bench_sessions",
    "bench.bench_tui",
    "bench.bench_sandbox",
    "bench.bench_agent_features",
    "bench.bench_opencode",
]

if __name__ == "__main__":
    failed = 0
    for module in MODULES:
        print(f"\n# {module}\n", flush=True)
        failed |= subprocess.call([sys.executable, "-m", module, *sys.argv[1:]])
    raise SystemExit(failed)
