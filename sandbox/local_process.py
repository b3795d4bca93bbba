"""Running one process of the local sandbox, and killing what it leaves.

A command runs in a new process group with its output streamed as it arrives
and kept head-and-tail up to a limit. On timeout, on cancellation of the
awaiting task, or when the output callback fails, the whole process tree is
killed and reaped before control returns: an interrupted command leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence

from sandbox.base import ExecResult, OutputCallback, SandboxError
from sandbox.output import OutputCapture

__all__ = ["OutputCapture", "ProcessSet", "kill_processes_in", "run_process", "with_note"]

# After the command exits, output still in the pipes is read at once; a
# background job that keeps the pipes open is not waited for longer than this.
_DRAIN_SECONDS = 0.5
# How long a kill waits for the killed processes to be gone.
_KILL_WAIT_SECONDS = 2.0
_CHUNK = 64 * 1024


class ProcessSet:
    """The running processes of one sandbox; once closed, no new one may start."""

    def __init__(self) -> None:
        self._processes: set[asyncio.subprocess.Process] = set()
        self.closed = False

    def add(self, process: asyncio.subprocess.Process) -> bool:
        """Track a started process; False (do not run it) once closed."""
        if self.closed:
            return False
        self._processes.add(process)
        return True

    def discard(self, process: asyncio.subprocess.Process) -> None:
        self._processes.discard(process)

    def __len__(self) -> int:
        return len(self._processes)

    async def kill_all(self, *, close: bool) -> None:
        """Kill every running process tree (and refuse new ones when ``close``)."""
        if close:
            self.closed = True
        await asyncio.gather(*(_kill_and_reap(p) for p in list(self._processes)))


async def run_process(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: str,
    timeout: float,  # noqa: ASYNC109 - a deadline for the process, not for this call's caller
    processes: ProcessSet,
    on_output: OutputCallback | None = None,
    max_output_bytes: int = 30_000,
    stop: Callable[[], Awaitable[str]] | None = None,
) -> ExecResult:
    """Run ``argv`` in a new session (and process group) and collect its output.

    ``exit_code`` is the process's, 128 + N when killed by signal N, and -1 on
    timeout. ``stop``, if given, runs beside the process: when it returns a
    reason, the process is killed like on a timeout and the reason ends its
    stderr (a resource bound was passed). Raises ``SandboxError`` if the
    process cannot start.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pipes = [os.fdopen(out_r, "rb", buffering=0), os.fdopen(err_r, "rb", buffering=0)]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except BaseException as exc:
        for pipe in pipes:
            pipe.close()
        if isinstance(exc, OSError):
            raise SandboxError(f"Could not start the command: {exc.strerror or exc}") from exc
        raise
    finally:
        # The child holds its own copies; ours must go or the pipes never reach EOF.
        os.close(out_w)
        os.close(err_w)

    captures = {
        "stdout": OutputCapture(max_output_bytes),
        "stderr": OutputCapture(max_output_bytes),
    }
    loop = asyncio.get_running_loop()
    transports: list[asyncio.ReadTransport] = []
    pumps: list[asyncio.Task[None]] = []
    timed_out = False
    stopped: str | None = None
    watcher = asyncio.ensure_future(stop()) if stop is not None else None
    try:
        if not processes.add(proc):
            raise SandboxError("The sandbox is stopped")
        for name, pipe in zip(captures, pipes, strict=True):
            reader = asyncio.StreamReader(limit=_CHUNK)
            transport, _ = await loop.connect_read_pipe(
                lambda reader=reader: asyncio.StreamReaderProtocol(reader), pipe
            )
            transports.append(transport)
            pumps.append(asyncio.create_task(_pump(name, reader, captures[name], on_output)))
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                stopped = await _wait_for_exit(proc, pumps, watcher)
        except TimeoutError:
            timed_out = True
        if timed_out or stopped is not None:
            await _kill_and_reap(proc)
            deadline = loop.time() + _DRAIN_SECONDS
        await _drain(pumps, list(captures.values()), deadline)
    except BaseException:
        # Cancelled (an interrupt), or the output callback failed: nothing may
        # outlive the call.
        for pump in pumps:
            pump.cancel()
        await _kill_and_reap(proc)
        raise
    finally:
        if watcher is not None:
            watcher.cancel()
        processes.discard(proc)
        for pump in pumps:
            pump.cancel()
        for transport in transports:
            transport.close()  # closes its pipe too
        for pipe in pipes[len(transports) :]:
            pipe.close()

    code = proc.returncode if proc.returncode is not None else -1
    stderr = captures["stderr"].text()
    if stopped is not None:
        stderr = with_note(stderr, stopped)
    return ExecResult(
        exit_code=-1 if timed_out else (128 - code if code < 0 else code),
        stdout=captures["stdout"].text(),
        stderr=stderr,
        timed_out=timed_out,
        truncated=any(c.truncated for c in captures.values()),
    )


def with_note(stderr: str, note: str) -> str:
    """``stderr`` with a ``[sandbox]`` line at its end: what the sandbox did or saw."""
    if stderr and not stderr.endswith("\n"):
        stderr += "\n"
    return f"{stderr}[sandbox] {note}\n"


async def _pump(
    name: str,
    reader: asyncio.StreamReader,
    capture: OutputCapture,
    on_output: OutputCallback | None,
) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while chunk := await reader.read(_CHUNK):
        capture.add(chunk)
        if on_output is not None and (text := decoder.decode(chunk)):
            await on_output(name, text)
    if on_output is not None and (text := decoder.decode(b"", final=True)):
        await on_output(name, text)


async def _wait_for_exit(
    proc: asyncio.subprocess.Process,
    pumps: list[asyncio.Task[None]],
    watcher: asyncio.Future[str] | None,
) -> str | None:
    """Wait for the process to exit (None) or the watcher to give a reason to
    stop it; raise at once if a pump (the callback) or the watcher fails."""
    waiter = asyncio.ensure_future(proc.wait())
    pending: set[asyncio.Future[object]] = {waiter, *pumps}
    if watcher is not None:
        pending.add(watcher)  # type: ignore[arg-type]
    try:
        while not waiter.done():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
                if task is watcher:
                    return watcher.result()
        return None
    finally:
        waiter.cancel()


async def _drain(
    pumps: list[asyncio.Task[None]], captures: list[OutputCapture], deadline: float
) -> None:
    """Read what is left in the pipes; surface a callback failure.

    Stops once no byte arrived for a short while (a background job holds the
    pipes open), or at the command's deadline, but not while output still
    flows to a slow callback.
    """
    pending = set(pumps)
    seen = -1
    loop = asyncio.get_running_loop()
    while pending:
        total = sum(c.total for c in captures)
        remaining = deadline - loop.time()
        if total == seen or remaining <= 0:
            break
        seen = total
        done, pending = await asyncio.wait(pending, timeout=min(_DRAIN_SECONDS, remaining))
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def _kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the process, its group and its descendants; wait until they are gone."""
    # The process table is read before anything dies: once a parent is killed,
    # its children are reparented and no longer show as descendants.
    await asyncio.to_thread(_kill_tree, proc.pid)
    await proc.wait()


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live (non-zombie) process."""
    table: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 3 and fields[0] != b"Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def _kill_tree(root_pid: int) -> None:
    """Kill ``root_pid``, its process group and every descendant, then wait a
    little for them to be gone (blocking: run in a thread)."""
    victims: set[int] = set()
    for _ in range(3):  # again, for children forked while we were killing
        table = _process_table()
        # Parents first (breadth first from the root): a shell killed after
        # its child could still run the next command of its line.
        order = sorted(
            pid for pid, (_, pgrp) in table.items() if pgrp == root_pid or pid == root_pid
        )
        order.sort(key=lambda pid: pid != root_pid)
        found = set(order)
        for parent in order:  # grows while it is walked
            for pid, (ppid, _) in table.items():
                if ppid == parent and pid not in found:
                    found.add(pid)
                    order.append(pid)
        new = [pid for pid in order if pid not in victims and pid != os.getpid()]
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        victims.update(new)
    # Under bwrap, killing the outer bwrap tears down its PID namespace too
    # (--die-with-parent); waiting below covers the namespace's processes.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(root_pid, signal.SIGKILL)
    _wait_gone(victims)


def _wait_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + _KILL_WAIT_SECONDS
    remaining = set(pids)
    while remaining and time.monotonic() < deadline:
        remaining = {pid for pid in remaining if _is_running(pid)}
        if remaining:
            time.sleep(0.01)


def _is_running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def kill_processes_in(directory: str) -> int:
    """SIGKILL every process whose working directory is ``directory`` or below it.

    The net for what a command's process group does not catch: a job that put
    itself in a new session (``setsid``, daemons) without leaving the workspace.
    Blocking: run it in a thread. Returns how many processes were killed.
    """
    directory = os.path.realpath(directory)
    prefix = directory.rstrip("/") + "/"
    me = os.getpid()
    killed: set[int] = set()
    for _ in range(3):
        found = set()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                cwd = os.readlink(f"/proc/{entry.name}/cwd")
            except OSError:
                continue
            cwd = cwd.removesuffix(" (deleted)")
            if cwd == directory or cwd.startswith(prefix):
                found.add(int(entry.name))
        if not found - killed:
            break
        for pid in found - killed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        killed |= found
    _wait_gone(killed)
    return len(killed)
