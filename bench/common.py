"""What the benchmarks share: a real ``agent-tui serve`` subprocess, its key, and tables."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    key: str
    pid: int
    env: dict[str, str]


@contextlib.contextmanager
def serve(
    env_overrides: dict[str, str], *, cpu: int | None = None, args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """Start ``agent-tui serve`` (optionally pinned to one CPU, with extra ``args``) with a
    fresh data dir and an admin key."""
    tmp = Path(tempfile.mkdtemp(prefix="agent-tui-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "AGENT_TUI_DATA_DIR": str(tmp / "data"),
        "AGENT_TUI_CONFIG_DIR": str(tmp / "config"),
        "DATABASE_URL": str(tmp / "data" / "bench.db"),
        "ANTHROPIC_API_KEY": "bench",
        "AGENT_TUI_LOG_LEVEL": "warning",
        "AGENT_TUI_UNSAFE_LOCAL_SANDBOX": "true",
        # The checkout's code, not the one the virtualenv's entry point was installed from
        # (an editable install points at one tree; a worktree would bench another's code).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env_overrides,
    }
    created = subprocess.run(
        [str(BIN / "agent-tui"), "keys", "create", "--name", "bench", "--scope", "admin", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = json.loads(created.stdout)["key"]
    cmd = [str(BIN / "agent-tui"), "serve", "--port", str(port), *args]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu), *cmd]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start")
            time.sleep(0.05)
        _wait_until_idle(proc.pid)
        for child in _children(proc.pid):  # --workers: each worker starts on its own
            _wait_until_idle(child)
        yield Server(url=url, key=key, pid=proc.pid, env=env)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_until_idle(pid: int, limit: float = 20.0) -> None:
    """Wait until the server stops using CPU: it imports the model SDK in the
    background after start-up (seconds of CPU), which is not what we measure."""
    deadline = time.monotonic() + limit
    before = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _cpu_seconds(pid)
        if now - before < 0.02:
            return
        before = now


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(title: str, headers: list[str], rows: list[list[object]]) -> str:
    """A plain text table."""
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    out = [title, line, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells[1:]]
    out.append(line)
    return "\n".join(out)
