"""``run_workers``: ``agent-tui serve --workers N``, N replicas behind one port.

The parent binds the listening socket once and starts N ``agent-tui serve``
processes that inherit it (the pre-fork model of gunicorn and uvicorn's own
``--workers``): the kernel hands each new connection to one of them. Each worker
is a full replica with its own replica id; they share sessions through
PostgreSQL and Redis like replicas on separate hosts, so a request may land on
any of them. A worker that dies is started again; SIGTERM or SIGINT stops them
all gracefully (each drains its turns).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

log = logging.getLogger("agent_tui.workers")

# A worker that dies sooner than this after its start is not restarted in a loop.
_MIN_UPTIME = 5.0


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket every worker inherits."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_workers(count: int, host: str, port: int, env: dict[str, str], stop_after: float) -> int:
    """Serve with ``count`` worker processes until SIGTERM/SIGINT; return the exit code.

    ``env`` is every worker's environment (the settings, flags included);
    ``stop_after`` bounds a graceful stop before workers are killed."""
    sock = bind_socket(host, port)
    fd = sock.fileno()
    base_id = env.get("AGENT_TUI_REPLICA_ID", "")
    stopping = False

    def spawn(index: int) -> subprocess.Popen[bytes]:
        worker_env = dict(env)
        if base_id:
            worker_env["AGENT_TUI_REPLICA_ID"] = f"{base_id}-{index}"
        return subprocess.Popen(
            [sys.executable, "-m", "agent_tui.cli", "serve", "--worker-fd", str(fd)],
            env=worker_env,
            pass_fds=(fd,),
        )

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = [spawn(i) for i in range(count)]
    started = [time.monotonic()] * count
    log.warning("serving on http://%s:%d with %d workers", host, port, count)
    try:
        while not stopping:
            time.sleep(0.2)
            for i, worker in enumerate(workers):
                status = worker.poll()
                if status is None or stopping:
                    continue
                if time.monotonic() - started[i] < _MIN_UPTIME:
                    log.error("worker %d exited at start-up (status %s): stopping", i, status)
                    stopping = True
                    break
                log.error(
                    "worker %d (pid %d) exited with %s: starting another", i, worker.pid, status
                )
                workers[i], started[i] = spawn(i), time.monotonic()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + stop_after
        for worker in workers:
            try:
                worker.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        sock.close()
    return 0


def worker_socket(fd: int) -> socket.socket:
    """The listening socket a worker inherited from ``run_workers``."""
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    return sock
