"""Replicas of ``agent-tui serve`` as separate OS processes, for scale-out tests.

A ``ReplicaSet`` runs N real ``agent-tui serve`` processes on free loopback
ports, all on one PostgreSQL database, one Redis (``REDIS_URL``) under one key
prefix, one shared data directory and one fake model, as a user would run them::

    replicas = await ReplicaSet(
        3, database_url=dsn, redis_url=url, redis_prefix=prefix,
        model_url=fake.url, workdir=tmp_path,
    ).start()
    r = await http.get(f"{replicas.urls[1]}/v1/keys", headers=replicas.auth())
    await replicas.kill(0)            # SIGKILL: the failover case
    await replicas.restart(0)         # same port, same id, waits until ready
    await replicas.stop()

Before the first start it applies the migrations and creates an admin key
(``admin_key``) directly through the store, so no replica races another on an
empty schema. Each replica's stdout and stderr go to ``replica-<i>.log`` in the
work directory (``logs()``, ``dump_logs()``); the fixtures in ``conftest.py``
print them when a test fails. Every process runs in its own session (process
group), so ``stop()`` also ends whatever a replica left running (sandbox
commands).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Replica", "ReplicaSet", "free_port", "serve_command"]

# Variables of the test process that must not leak into a replica: each replica
# gets exactly the configuration the harness gives it.
_SCRUBBED_PREFIXES = (
    "ANTHROPIC_",
    "UPSTASH_",
    "MODAL_",
    "RATE_LIMIT_",
    "AGENT_TUI_",
    "DATABASE_URL",
    "REDIS_URL",
    "SANDBOX_",
    "LOCAL_SANDBOX_",
    "XDG_",
)


_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A loopback port free right now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command() -> list[str]:
    """How to start ``agent-tui serve``: the console script beside this Python, else ``-m``."""
    script = Path(sys.executable).parent / "agent-tui"
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "agent_tui.cli", "serve"]


@dataclass
class Replica:
    """One ``agent-tui serve`` process (or the slot for one, while it is down)."""

    index: int
    port: int
    replica_id: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0  # how many times this slot was started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class ReplicaSet:
    """N ``agent-tui serve`` processes sharing PostgreSQL, Redis, a data dir and a model."""

    def __init__(
        self,
        count: int,
        *,
        database_url: str,
        redis_url: str,
        redis_prefix: str,
        model_url: str,
        workdir: Path,
        env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
        log_level: str = "info",
    ) -> None:
        """``env`` adds or overrides variables for every replica (e.g. rate limits).

        ``ready_timeout`` is generous on purpose: a loaded 2-core machine can
        take seconds to import and start each process.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        self.database_url = database_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.model_url = model_url
        self.workdir = Path(workdir)
        self.ready_timeout = ready_timeout
        self.log_level = log_level
        self.extra_env = dict(env or {})
        self.admin_key = ""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.replicas = [
            Replica(
                index=i,
                port=free_port(),
                replica_id=f"replica-{i}",
                log_path=self.workdir / f"replica-{i}.log",
            )
            for i in range(count)
        ]

    # ---- what tests use

    @property
    def urls(self) -> list[str]:
        """The base URL of each replica, by index."""
        return [r.url for r in self.replicas]

    def __len__(self) -> int:
        return len(self.replicas)

    def __getitem__(self, index: int) -> Replica:
        return self.replicas[index]

    def auth(self, key: str | None = None) -> dict[str, str]:
        """The Authorization header for ``key`` (default: the admin key)."""
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    @property
    def data_dir(self) -> Path:
        """The data directory every replica shares (local sandboxes live there)."""
        return self.workdir / "data"

    def environment(self, replica: Replica) -> dict[str, str]:
        """The whole environment one replica runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            RATE_LIMIT_PREFIX=self.redis_prefix,
            AGENT_TUI_REPLICA_ID=replica.replica_id,
            AGENT_TUI_DATA_DIR=str(self.data_dir),
            AGENT_TUI_CONFIG_DIR=str(self.workdir / "config"),
            AGENT_TUI_LOG_LEVEL=self.log_level,
            ANTHROPIC_API_KEY="test-key",
            ANTHROPIC_BASE_URL=self.model_url,
            AGENT_TUI_UNSAFE_LOCAL_SANDBOX="true",
            PYTHONUNBUFFERED="1",
            # The code under test, not whatever checkout the virtualenv's editable
            # install points at (a git worktree shares the main tree's venv).
            PYTHONPATH=os.pathsep.join(
                p for p in (str(_PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        )
        env.update(self.extra_env)
        return env

    async def start(self) -> ReplicaSet:
        """Migrate, create the admin key, start every replica and wait until all are ready."""
        await self._prepare_database()
        for replica in self.replicas:
            self._spawn(replica)
        await asyncio.gather(*(self.wait_ready(r.index) for r in self.replicas))
        return self

    async def create_key(
        self, user: str = "alice", scopes: tuple[str, ...] = ("sessions", "admin")
    ) -> str:
        """A new API key for ``user``, written straight to the shared database."""
        from backend.auth import create_api_key
        from backend.settings import Settings
        from backend.store import open_store

        store = open_store(Settings(database_url=self.database_url))
        try:
            await store.migrate()
            _, key = await create_api_key(
                store, user_id=user, name=f"{user}-harness", scopes=list(scopes)
            )
        finally:
            await store.close()
        return key

    async def kill(self, index: int, sig: int = signal.SIGKILL, within: float = 30.0) -> int:
        """Send ``sig`` to replica ``index`` (only the server process) and wait for it to exit.

        Returns its exit status. SIGKILL plays a crashed host; SIGTERM a graceful stop.
        """
        replica = self.replicas[index]
        process = replica.process
        if process is None or process.poll() is not None:
            raise RuntimeError(f"replica {index} is not running")
        process.send_signal(sig)
        return await self._wait_exit(process, within)

    async def restart(self, index: int) -> None:
        """Start replica ``index`` again (stopping it first if it runs), same port and id."""
        replica = self.replicas[index]
        if replica.alive:
            await self.kill(index, signal.SIGTERM)
        self._end_group(replica)
        self._spawn(replica)
        await self.wait_ready(index)

    async def stop(self) -> None:
        """Stop every replica (SIGTERM, then SIGKILL after a grace period) and its children."""
        await asyncio.gather(*(self._stop_one(r) for r in self.replicas))

    async def wait_ready(self, index: int, within: float | None = None) -> None:
        """Poll ``/health`` of replica ``index`` until it answers 200, within a deadline."""
        replica = self.replicas[index]
        limit = within or self.ready_timeout
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                process = replica.process
                if process is None or process.poll() is not None:
                    status = process.returncode if process is not None else None
                    raise RuntimeError(
                        f"replica {index} exited (status {status}) before it was ready\n"
                        + self.logs(index, tail=60)
                    )
                try:
                    if (await http.get(f"{replica.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"replica {index} was not ready within {limit:g} s\n"
                        + self.logs(index, tail=60)
                    )
                await asyncio.sleep(0.05)

    def logs(self, index: int, tail: int | None = None) -> str:
        """Replica ``index``'s output so far (its last ``tail`` lines if given)."""
        path = self.replicas[index].log_path
        if not path.exists():
            return ""
        text = path.read_text(errors="replace")
        if tail is not None:
            text = "\n".join(text.splitlines()[-tail:])
        return text

    def dump_logs(self) -> str:
        """Every replica's output, each under a header, for a failure report."""
        parts = []
        for replica in self.replicas:
            parts.append(
                f"----- replica {replica.index} ({replica.replica_id}, port {replica.port}, "
                f"started {replica.starts}x) -----\n{self.logs(replica.index)}"
            )
        return "\n".join(parts)

    # ---- internals

    async def _prepare_database(self) -> None:
        if not self.admin_key:
            self.admin_key = await self.create_key("admin", ("sessions", "admin"))

    def _spawn(self, replica: Replica) -> None:
        cmd = [*serve_command(), "--host", "127.0.0.1", "--port", str(replica.port)]
        with replica.log_path.open("ab") as log:
            replica.starts += 1
            log.write(f"===== start #{replica.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            replica.process = subprocess.Popen(
                cmd,
                env=self.environment(replica),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: stop() can end its children too, and a
                # signal meant for the test runner never reaches it.
                start_new_session=True,
            )

    async def _stop_one(self, replica: Replica) -> None:
        process = replica.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await self._wait_exit(process, 15.0)
            except TimeoutError:
                process.kill()
                await self._wait_exit(process, 15.0)
        self._end_group(replica)

    @staticmethod
    def _end_group(replica: Replica) -> None:
        """SIGKILL what is left in the replica's process group (sandbox commands)."""
        if replica.process is None:
            return
        try:
            os.killpg(replica.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    async def _wait_exit(process: subprocess.Popen[bytes], within: float) -> int:
        deadline = time.monotonic() + within
        while (status := process.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {process.pid} did not exit within {within:g} s")
            await asyncio.sleep(0.02)
        return status
