"""Long-running services in a local sandbox, reached over Unix sockets.

A service (``ServiceSpec``) runs under the sandbox's isolation like any command,
wrapped by ``sandbox/service_relay.py``. The relay and the sockets live in the
workspace's ``.agent-tui/`` directory, the one directory both sides see:

- the server reaches the service's ``127.0.0.1`` port through
  ``.agent-tui/<name>.sock`` (relayed inside the sandbox);
- the service reaches the server's ``host_app`` (only that app, e.g. the model
  proxy) at ``http://127.0.0.1:<port>`` inside the sandbox, relayed to
  ``.agent-tui/<name>-host.sock``, on which this module serves ``host_app``.

Neither direction needs the sandbox to share the host's network, so a sandbox
without network (``--unshare-net``) can still run the service.

A service runs under ``ResourceLimits.for_service()`` (its own CPU-time bound).
One with ``shell_bounds`` (OpenCode) also runs without the per-process memory
bound, and its ``SHELL`` is a read-only script that execs ``bash`` under the
commands' memory and CPU-time bounds: each command it runs is bound like any
other command of the sandbox (see ``ServiceSpec.shell_bounds`` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
import shutil
import socket
import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.base import RESERVED_DIR, RESERVED_GITIGNORE, SandboxError, ServiceSpec
from sandbox.local_limits import ResourceLimits

if TYPE_CHECKING:
    from sandbox.local import LocalSandbox

__all__ = [
    "SERVICE_DIR",
    "LocalService",
    "bind_unix",
    "prepare_service_dir",
    "relay_python",
    "serve_host_app",
    "start_local_service",
]

SERVICE_DIR = RESERVED_DIR
_RELAY = "service_relay.py"


def _free_port() -> int:
    """A loopback port free now (a sandbox sharing the host's network needs one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bind_unix(directory: Path, name: str, owner: tuple[int, int] | None) -> socket.socket:
    """A listening Unix socket at ``directory/name``, whatever the path's length:
    bound through ``/proc/self/fd`` so only the short form meets the 108-byte limit.
    ``owner`` (the sandbox's user) gets it, so the sandbox may connect."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(f"/proc/self/fd/{fd}/{name}")
        if owner is not None:
            os.chown(f"/proc/self/fd/{fd}/{name}", *owner)
        sock.listen(64)
        sock.setblocking(False)
        return sock
    finally:
        os.close(fd)


def prepare_service_dir(workspace: Path, owner: tuple[int, int] | None) -> Path:
    """The workspace's ``.agent-tui/``, made if missing, with its ``.gitignore`` (git
    never shows it); ``owner`` (the sandbox's user, when not the server's) gets both,
    so the sandbox may write there. Blocking."""
    service_dir = workspace / SERVICE_DIR
    service_dir.mkdir(exist_ok=True)
    (service_dir / ".gitignore").write_bytes(RESERVED_GITIGNORE)
    if owner is not None:
        for path in (service_dir, service_dir / ".gitignore"):
            os.chown(path, *owner)
    return service_dir


def _shell_bounds(limits: ResourceLimits) -> tuple[ResourceLimits, ResourceLimits | None]:
    """The service's own bounds, and those its shell puts back (None: nothing to put back)."""
    moved = ResourceLimits(
        max_processes=0,
        memory_mib=limits.memory_mib,
        cpu_seconds=limits.cpu_seconds,
        max_file_mib=0,
        workspace_mib=0,
    )
    service = limits.for_service()  # its own CPU-time bound (none by default)
    if not (moved.memory_mib or moved.cpu_seconds):
        return service, None
    return dataclasses.replace(service, memory_mib=0), moved


def _write_shell(path: Path, prlimit: str, bash: str, bounds: ResourceLimits) -> None:
    """A ``sh`` script, named ``bash`` (what the service's shell detection reads),
    that runs ``bash`` under ``bounds``. It lives outside the workspace and is
    bound read-only into the sandbox, so no command can rewrite it."""
    argv = [*bounds.prlimit_argv(prlimit, processes=False), bash]
    path.write_text(
        "#!/bin/sh\n# The sandbox's per-command bounds, on each command this service runs.\n"
        f'exec {shlex.join(argv)} "$@"\n'
    )
    path.chmod(0o755)


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


class LocalService:
    """A service running in a local sandbox (see ``ServiceHandle``)."""

    def __init__(
        self,
        name: str,
        process: asyncio.subprocess.Process,
        link_dir: Path,
        host_server: Any,
        host_task: asyncio.Task[None] | None,
        sandbox: LocalSandbox,
    ) -> None:
        self.name = name
        self.process = process
        self._link_dir = link_dir
        self._host_server = host_server
        self._host_task = host_task
        self._sandbox = sandbox
        # The socket's path through a short symlink: the workspace path may be long.
        self._transport = httpx.AsyncHTTPTransport(uds=str(link_dir / "s"))

    @property
    def base_url(self) -> str:
        return "http://sandbox"

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        return self._transport

    @property
    def headers(self) -> dict[str, str]:
        return {}  # the socket is reachable by this server only

    async def is_running(self) -> bool:
        return self.process.returncode is None

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 15)
            try:
                await asyncio.wait_for(self.process.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, 9)
                await self.process.wait()
        self._sandbox._processes.discard(self.process)
        if self._host_server is not None:
            self._host_server.should_exit = True
        if self._host_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._host_task, 5)
        await self._transport.aclose()
        await asyncio.to_thread(shutil.rmtree, self._link_dir, True)


async def serve_host_app(app: Any, sock: socket.socket) -> tuple[Any, asyncio.Task[None]]:
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            yield  # the process's signals belong to the main server

    server = _Server(
        uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", ws="none")
    )
    task = asyncio.create_task(server.serve([sock]), name="sandbox-host-app")
    while not server.started:
        if task.done():
            task.result()
            raise SandboxError("The sandbox's service endpoint did not start")
        await asyncio.sleep(0.01)
    return server, task


def relay_python() -> tuple[str, list[str]]:
    """A Python for the relay inside the sandbox, and the host paths it needs.

    The system's ``/usr/bin/python3`` when there is one; else this server's own
    interpreter with its installation (which may live in a hidden home).
    Shims (pyenv) are scripts that need more than the sandbox shows, so they
    are not used.
    """
    if os.path.isfile("/usr/bin/python3"):
        return "/usr/bin/python3", ["/usr/bin/python3"]
    real = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    return real, [real, sys.base_prefix]


def _prepare_files(
    service_dir: Path,
    name: str,
    read_only: list[str],
    owner: tuple[int, int] | None,
    shell: tuple[str, str, ResourceLimits] | None,
) -> tuple[Path, list[str], Any]:
    """Blocking set-up (run in a thread): the relay script, the short socket link,
    the log file, the bounded shell (``shell``: prlimit, bash, bounds) and the
    real paths to expose. ``owner`` (uid, gid) is the sandbox's own user when it
    is not the server's: the service writes there."""
    prepare_service_dir(service_dir.parent, owner)
    (service_dir / _RELAY).write_bytes((resources.files("sandbox") / _RELAY).read_bytes())
    log_path = service_dir / f"{name}.log"
    log_file = open(log_path, "ab")
    if owner is not None:
        for path in (service_dir / _RELAY, log_path):
            os.chown(path, *owner)
    link_dir = Path(tempfile.mkdtemp(prefix="agent-tui-svc-"))
    os.symlink(service_dir / f"{name}.sock", link_dir / "s")
    exposed = [os.path.realpath(p) for p in read_only]
    if shell is not None:
        (link_dir / "bin").mkdir()
        _write_shell(link_dir / "bin" / "bash", *shell)
        exposed.append(str(link_dir / "bin" / "bash"))
    return link_dir, exposed, log_file


async def start_local_service(sandbox: LocalSandbox, spec: ServiceSpec) -> LocalService:
    """Launch ``spec`` in ``sandbox`` (see the module docstring)."""
    workspace = sandbox.workspace
    service_dir = workspace / SERVICE_DIR
    python, python_paths = relay_python()
    user = sandbox.user
    owner = (user.uid, user.gid) if user.switch else None
    limits: ResourceLimits | None = None  # None: the service bounds (``service=True``)
    shell = None
    if spec.shell_bounds and sandbox.prlimit is not None:
        limits, put_back = _shell_bounds(sandbox.limits)
        if put_back is not None:
            shell = (str(sandbox.prlimit), str(sandbox.bash), put_back)
    link_dir, read_only, log_file = await asyncio.to_thread(
        _prepare_files, service_dir, spec.name, [*python_paths, *spec.binaries], owner, shell
    )
    port = spec.port or _free_port()
    values = {"port": str(port)}
    relay_args = ["--dir", str(service_dir), "--expose", f"{spec.name}.sock={port}"]
    host_server = host_task = None
    try:
        if spec.host_app is not None:
            host_port = _free_port()
            sock = bind_unix(service_dir, f"{spec.name}-host.sock", owner)
            host_server, host_task = await serve_host_app(spec.host_app, sock)
            relay_args += ["--ingress", f"{host_port}={spec.name}-host.sock"]
            values["host_url"] = f"http://127.0.0.1:{host_port}"
        argv = [_fill(a, values) for a in spec.argv]
        env = sandbox.command_env()
        env.update({k: _fill(v, values) for k, v in spec.env.items()})
        if shell is not None:
            env["SHELL"] = str(link_dir / "bin" / "bash")
        wrapped = sandbox.command_argv(
            [python, str(service_dir / _RELAY), *relay_args, "--", *argv],
            read_only=read_only,
            service=True,
            limits=limits,
        )
        process = await asyncio.create_subprocess_exec(
            *wrapped,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(workspace),
            env=env,
            start_new_session=True,
        )
    except BaseException as exc:
        if host_server is not None:
            host_server.should_exit = True
        await asyncio.to_thread(shutil.rmtree, link_dir, True)
        if isinstance(exc, OSError):
            raise SandboxError(f"Could not start {spec.name}: {exc.strerror or exc}") from exc
        raise
    finally:
        log_file.close()
    service = LocalService(spec.name, process, link_dir, host_server, host_task, sandbox)
    if not sandbox._processes.add(process):
        await service.stop()
        raise SandboxError("The sandbox is stopped")
    sandbox._log(f"service {spec.name} started (pid {process.pid})")
    return service
