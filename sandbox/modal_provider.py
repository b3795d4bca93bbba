"""Session sandboxes on Modal (``SANDBOX_PROVIDER=modal``).

Each session runs in one ``modal.Sandbox`` of the app deployed from
``sandbox/sandbox.py``, tagged with its session id. Pausing snapshots the
container's filesystem to an image (``im-...``) and stops the sandbox; resuming
creates a new sandbox from that image. The server talks to Modal through the
SDK's async interface (``await X.aio(...)``) only.

Secrets: the Anthropic key never reaches Modal. A git token lives in the
environment of the one clone command (as an HTTP header scoped to the repo's
host), never in argv, the image, a snapshot, the workspace or a log.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import contextlib
import importlib
import logging
import math
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from backend.errors import ApiError, FileNotFound, SandboxError, SandboxPathError, ValidationError
from backend.settings import Settings
from sandbox.base import (
    RESERVED_DIR,
    ExecResult,
    FileEntry,
    IsADirectory,
    NotADirectory,
    OutputCallback,
    ProgressCallback,
    ServiceSpec,
    SnapshotLost,
    normalize_relative_path,
)
from sandbox.output import OutputCapture

__all__ = ["WORKDIR", "ModalSandbox", "ModalSandboxProvider"]

log = logging.getLogger(__name__)

WORKDIR = "/workspace"
# The port a sandbox service (OpenCode) listens on, exposed through a Modal
# tunnel (TLS) and protected by a per-start password.
SERVICE_PORT = 4096
# Starts a service in the background: $1 the service dir, $2 its pid file, $3
# its log, then its argv. Paths travel as arguments, never inside the script.
# The dir gets a .gitignore of "*": git never shows agent-tui's own files.
_SERVICE_WRAPPER = (
    'mkdir -p "$1" && printf "%s\\n" "*" > "$1/.gitignore" && '
    'echo $$ > "$2" && exec "${@:4}" >>"$3" 2>&1'
)
# $1: the service's pid file, $2: how many 0.1 s ticks it may take to exit
# after SIGTERM before it gets SIGKILL. Returns once it is gone (a zombie counts).
_SERVICE_STOP = """\
pid=$(cat -- "$1" 2>/dev/null) || exit 0
rm -f -- "$1"
kill -TERM "$pid" 2>/dev/null || exit 0
gone() { ! kill -0 "$pid" 2>/dev/null || grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; }
for _ in $(seq 1 "$2"); do gone && exit 0; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null
exit 0
"""
SERVICE_STOP_GRACE_TICKS = 100  # 10 s
# Outside the workspace, so it is in every snapshot but never shown to the agent's file API.
MARKER_PATH = "/var/lib/agent-tui/session-id"
TAG_SESSION = "agent-tui-session"
TAG_MANAGED = ("managed-by", "agent-tui")

CLONE_TIMEOUT_SECONDS = 600
SNAPSHOT_TIMEOUT_SECONDS = 300
SNAPSHOT_TTL_SECONDS = 30 * 24 * 3600  # Modal keeps the snapshot image this long
HELPER_TIMEOUT_SECONDS = 60
KILL_TIMEOUT_SECONDS = 15.0
# Modal's own exec deadline, past ours: a backstop if this server dies mid-command.
EXEC_BACKSTOP_SECONDS = 30
# After the exit status, how long output may still trail in. A background child
# that keeps the pipe open must not hold the call until the timeout.
OUTPUT_GRACE_SECONDS = 2.0
# Modal refuses exec argv over 64 KiB; longer commands go through a script file.
MAX_INLINE_COMMAND_BYTES = 60_000
LOG_LINES_PER_SESSION = 500
LOG_SESSIONS = 1000

# Runs the command in its own session (so its whole process group can be killed,
# Modal having no kill for an exec) and records the group id in a file.
# $1: the pid file, $2: the command, $3: the command's $0. `setsid -w` waits
# when it has to fork.
_EXEC_WRAPPER = """\
setsid -w bash -c 'echo $$ > "$0"; exec bash -lc "$1" "$2"' "$1" "$2" "$3" &
child=$!
wait "$child"
rc=$?
rm -f -- "$1"
exit "$rc"
"""

# A long command, written to the file that is the command's $0.
_SOURCE_SCRIPT = """\
trap 'rm -f -- "$0"' EXIT
. "$0"
"""

# $1: the pid file. Waits briefly for it: a cancel can race the command's start.
_KILL_SCRIPT = """\
for _ in $(seq 1 50); do [ -s "$1" ] && break; sleep 0.1; done
[ -s "$1" ] || exit 0
kill -KILL -- "-$(cat -- "$1")" 2>/dev/null
rm -f -- "$1"
exit 0
"""

# $1: the URL, $2: the target. The token, if any, arrives as GIT_CONFIG_* env.
_CLONE_SCRIPT = """\
set -e
git clone --quiet -- "$1" "$2"
"""

_REPO_SLUG = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(command: str, limit: int = 200) -> str:
    first = command.strip().splitlines()[0] if command.strip() else ""
    more = len(first) > limit or "\n" in command.strip()
    return first[:limit] + (" ..." if more else "")


class _SessionLog:
    """A bounded log of what the provider did for one session (commands, exit codes, errors)."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=LOG_LINES_PER_SESSION)

    def add(self, message: str) -> None:
        self._lines.append(f"{_now()} {message}")

    def tail(self, n: int) -> list[str]:
        return list(self._lines)[-n:] if n > 0 else []


class _ModalErrors:
    """Turns Modal's exceptions into ``SandboxError`` messages a user can act on."""

    def __init__(self, exc_module: ModuleType, app_name: str, environment: str) -> None:
        self.exc = exc_module
        self._app = app_name
        self._env = environment or "the default environment"

    def translate(self, exc: BaseException, action: str) -> ApiError:
        if isinstance(exc, ApiError):
            return exc
        e = self.exc
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, e.AuthError):
            message = (
                "Modal authentication failed: set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET for the server "
                "(or run `modal token new`)"
            )
        elif isinstance(exc, e.PermissionDeniedError):
            message = f"Modal denied access while {action}: does the token belong to the workspace of app '{self._app}'?"
        elif isinstance(exc, e.NotFoundError) and action == "looking up the Modal app":
            message = (
                f"Modal app '{self._app}' not found in {self._env}: check MODAL_APP_NAME and "
                f"MODAL_ENVIRONMENT, then run `modal deploy sandbox/sandbox.py` ({text})"
            )
        elif isinstance(exc, e.NotFoundError):
            message = f"Modal could not find what it needed while {action}: {text}"
        elif isinstance(exc, e.ImageBuildError):
            message = "The sandbox image failed to build on Modal: run `modal deploy sandbox/sandbox.py` to see the build log"
        elif isinstance(exc, e.SandboxTerminatedError | e.ConflictError):
            message = f"The sandbox is no longer running ({action})"
        elif isinstance(exc, e.ResourceExhaustedError):
            message = f"Modal quota or rate limit reached while {action}: {text}"
        elif isinstance(exc, e.TimeoutError):
            message = f"Modal timed out while {action}"
        elif isinstance(
            exc, e.ConnectionError | e.ServiceError | e.InternalError | e.InternalFailure | OSError
        ):
            message = f"Could not reach Modal while {action}; try again shortly"
        elif isinstance(exc, e.InvalidError):
            message = f"Modal rejected the request while {action}: {text}"
        elif isinstance(exc, e.Error):
            message = f"Modal failed while {action}: {text}"
        else:
            message = f"Modal failed while {action}: {type(exc).__name__}"
        return SandboxError(message, details={"provider": "modal"})

    @contextlib.contextmanager
    def guard(self, action: str, log_to: _SessionLog | None = None) -> Iterator[None]:
        """Re-raise any Modal failure inside the block as a ``SandboxError``."""
        try:
            yield
        except ApiError as error:
            if log_to is not None:
                log_to.add(f"error: {error.message}")
            raise
        except Exception as exc:
            error = self.translate(exc, action)
            if log_to is not None:
                log_to.add(f"error: {error.message}")
            log.warning("modal: %s failed: %s: %s", action, type(exc).__name__, exc)
            raise error from exc

    def filesystem(self, exc: Exception, path: str, action: str) -> ApiError:
        """Map the filesystem API's errors to the contract's (404, 400), else ``translate``."""
        e, details = self.exc, {"path": path}
        if isinstance(exc, e.SandboxFilesystemNotFoundError):
            return FileNotFound(details=details)
        if isinstance(exc, e.SandboxFilesystemIsADirectoryError):
            return IsADirectory(details=details)
        if isinstance(exc, e.SandboxFilesystemNotADirectoryError):
            return NotADirectory(details=details)
        if isinstance(exc, e.SandboxFilesystemFileTooLargeError):
            return ValidationError("The file is too large to read through the API", details=details)
        if isinstance(exc, e.SandboxFilesystemPermissionError):
            return SandboxError("Permission denied in the sandbox", details=details)
        return self.translate(exc, action)


class ModalService:
    """A service in a Modal sandbox, reached over its tunnel (see ``ServiceHandle``)."""

    def __init__(
        self, sandbox: ModalSandbox, process: Any, url: str, headers: dict[str, str], pidfile: str
    ) -> None:
        self._sandbox = sandbox
        self.process = process
        self._url = url
        self._headers = headers
        self._pidfile = pidfile

    @property
    def base_url(self) -> str:
        return self._url

    @property
    def transport(self) -> None:
        return None

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    async def is_running(self) -> bool:
        try:
            return await self.process.poll.aio() is None
        except Exception:
            return False

    async def stop(self) -> None:
        """Stop the service and wait (bounded) until it has exited: a pause
        snapshots the workspace next, and the service must not be mid-write."""
        with contextlib.suppress(Exception):
            process = await self._sandbox.handle.exec.aio(
                "bash",
                "-c",
                _SERVICE_STOP,
                "agent-service-stop",
                self._pidfile,
                str(SERVICE_STOP_GRACE_TICKS),
                timeout=int(SERVICE_STOP_GRACE_TICKS / 10) + HELPER_TIMEOUT_SECONDS,
            )
            await process.wait.aio()


class ModalSandbox:
    """One session's running Modal sandbox: commands and workspace files."""

    def __init__(
        self, handle: Any, session_id: str, errors: _ModalErrors, session_log: _SessionLog
    ) -> None:
        self.handle = handle
        self.session_id = session_id
        self._errors = errors
        self.session_log = session_log
        self._background: set[asyncio.Task[None]] = set()
        # Added to each agent command's environment (the model proxy's URL and token).
        self._command_env: dict[str, str] = {}

    @property
    def id(self) -> str:
        """Modal's sandbox id (``sb-...``)."""
        return self.handle.object_id

    async def set_command_env(self, env: dict[str, str], *, host_app: Any = None) -> None:
        """Every later ``exec`` gets ``env``; see ``sandbox.base.Sandbox.set_command_env``.
        ``host_app`` cannot be relayed into Modal: give a public URL in ``env``."""
        if host_app is not None:
            raise SandboxError("A Modal sandbox cannot reach the server's private app")
        self._command_env = dict(env)

    # ------------------------------------------------------------------ commands

    async def exec(
        self,
        command: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the Sandbox protocol's name; Modal enforces it too
        on_output: OutputCallback | None = None,
        max_output_bytes: int = 30_000,
    ) -> ExecResult:
        """Run ``command`` with ``bash -lc`` in /workspace; see ``sandbox.base.Sandbox.exec``."""
        started = time.monotonic()
        token = secrets.token_hex(8)
        pidfile = f"/tmp/.agent-pid-{token}"
        summary = _summary(command)
        arg0 = "bash"
        if len(command.encode()) > MAX_INLINE_COMMAND_BYTES:
            # Every absolute path travels as its own argv item, never inside a script.
            arg0 = f"/tmp/.agent-cmd-{token}.sh"
            await self.write_absolute(arg0, command.encode(), "writing a long command")
            command = _SOURCE_SCRIPT
        try:
            with self._errors.guard("starting a command", self.session_log):
                process = await self.handle.exec.aio(
                    "bash",
                    "-c",
                    _EXEC_WRAPPER,
                    "agent-exec",
                    pidfile,
                    command,
                    arg0,
                    timeout=math.ceil(timeout) + EXEC_BACKSTOP_SECONDS,
                    workdir=WORKDIR,
                    text=False,
                    # Only when set: the agent's commands get nothing else of ours.
                    **({"env": dict(self._command_env)} if self._command_env else {}),
                )
        except asyncio.CancelledError:
            # The request may have reached Modal: the command could start anyway.
            self.session_log.add(f"exec interrupted while starting: {summary}")
            await self._kill_shielded(pidfile)
            raise
        out, err = OutputCapture(max_output_bytes), OutputCapture(max_output_bytes)
        pumps = [
            asyncio.create_task(_pump(process.stdout, "stdout", out, on_output)),
            asyncio.create_task(_pump(process.stderr, "stderr", err, on_output)),
        ]
        timed_out = False
        try:
            exit_code = await asyncio.wait_for(self._finish(process, pumps), timeout)
            timed_out = exit_code == -1  # Modal's own deadline passed first
        except TimeoutError:
            exit_code, timed_out = -1, True
        except asyncio.CancelledError:
            self.session_log.add(
                f"exec interrupted after {time.monotonic() - started:.1f}s: {summary}"
            )
            await self._kill_shielded(pidfile)
            raise
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        if timed_out:
            await self._kill(pidfile)
            self.session_log.add(f"exec timed out after {timeout:g}s: {summary}")
        else:
            self.session_log.add(
                f"exec exit={exit_code} {time.monotonic() - started:.1f}s: {summary}"
            )
        return ExecResult(
            exit_code=-1 if timed_out else exit_code,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            truncated=out.truncated or err.truncated,
        )

    async def _finish(self, process: Any, pumps: list[asyncio.Task[None]]) -> int:
        with self._errors.guard("running a command", self.session_log):
            exit_code = await process.wait.aio()
            done, _ = await asyncio.wait(pumps, timeout=OUTPUT_GRACE_SECONDS)
            for pump in done:
                pump.result()  # a failed stream read is an error, not silent loss
        return exit_code

    async def _kill(self, pidfile: str) -> None:
        """Kill the process group recorded in ``pidfile``; best effort."""
        try:
            await self.run_helper("bash", "-c", _KILL_SCRIPT, "agent-kill", pidfile, timeout=30)
        except Exception as exc:
            self.session_log.add(f"could not kill a command: {type(exc).__name__}")
            log.warning("modal: kill in %s failed: %s", self.id, exc)

    async def _kill_shielded(self, pidfile: str) -> None:
        # The caller is being cancelled: the kill must still run to the end.
        task = asyncio.create_task(self._kill(pidfile))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), KILL_TIMEOUT_SECONDS)

    async def run_helper(
        self,
        *args: str,
        timeout: int,  # noqa: ASYNC109 - Modal's exec deadline, enforced on its side
        env: dict[str, str] | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run one of our own short commands (not the agent's); return (exit code, stdout, stderr)."""
        process = await self.handle.exec.aio(
            *args, timeout=timeout, workdir=WORKDIR, env=env, text=False
        )
        stdout, stderr, code = await asyncio.gather(
            process.stdout.read.aio(), process.stderr.read.aio(), process.wait.aio()
        )
        return code, bytes(stdout), bytes(stderr)

    async def start_service(self, spec: ServiceSpec) -> ModalService:
        """Start ``spec`` in the background, reached through the sandbox's tunnel.

        ``host_app`` cannot be relayed into Modal: the service must reach this
        server by a public URL given in ``spec.env`` instead.
        """
        if spec.host_app is not None:
            raise SandboxError("A Modal sandbox cannot reach the server's private app")
        port = spec.port or SERVICE_PORT
        env = {k: v.replace("{port}", str(port)) for k, v in spec.env.items()}
        headers: dict[str, str] = {}
        if spec.password_env:
            password = secrets.token_urlsafe(24)
            env[spec.password_env] = password
            basic = base64.b64encode(f"{spec.name}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        argv = [a.replace("{port}", str(port)) for a in spec.argv]
        service_dir = f"{WORKDIR}/{RESERVED_DIR}"
        pidfile = f"/tmp/.agent-service-{spec.name}.pid"
        with self._errors.guard(f"starting {spec.name}", self.session_log):
            process = await self.handle.exec.aio(
                "bash",
                "-c",
                _SERVICE_WRAPPER,
                "agent-service",
                service_dir,
                pidfile,
                f"{service_dir}/{spec.name}.log",
                *argv,
                workdir=WORKDIR,
                env=env,
                text=False,
            )
            tunnels = await self.handle.tunnels.aio()
        if port not in tunnels:
            raise SandboxError(f"The sandbox exposes no tunnel for port {port}")
        self.session_log.add(f"service {spec.name} started on port {port}")
        return ModalService(self, process, tunnels[port].url, headers, pidfile)

    async def is_alive(self) -> bool:
        """Whether Modal still runs the sandbox."""
        with self._errors.guard("checking the sandbox"):
            return await self.handle.poll.aio() is None

    # ------------------------------------------------------------------ files

    async def _resolve(self, path: str) -> tuple[str, str]:
        """(relative, absolute) for a client path; refuses symlinks that lead out of /workspace."""
        relative = normalize_relative_path(path)
        if not relative:
            return "", WORKDIR
        target = f"{WORKDIR}/{relative}"
        with self._errors.guard("resolving a path"):
            code, stdout, _ = await self.run_helper(
                "realpath", "-m", "--", target, timeout=HELPER_TIMEOUT_SECONDS
            )
        resolved = stdout.decode("utf-8", "replace").strip()
        if code != 0 or not (resolved == WORKDIR or resolved.startswith(WORKDIR + "/")):
            raise SandboxPathError(details={"path": path})
        return relative, target

    async def read_file(self, path: str) -> bytes:
        """The bytes of a workspace file."""
        relative, target = await self._resolve(path)
        try:
            return bytes(await self.handle.filesystem.read_bytes.aio(target))
        except Exception as exc:
            raise self._errors.filesystem(exc, relative, "reading a file") from exc

    async def write_file(self, path: str, data: bytes) -> None:
        """Create or overwrite a workspace file, creating parent directories."""
        relative, target = await self._resolve(path)
        if not relative:
            raise IsADirectory(details={"path": path})
        await self.write_absolute(target, data, "writing a file", relative)

    async def write_absolute(
        self, target: str, data: bytes, action: str, shown: str | None = None
    ) -> None:
        try:
            await self.handle.filesystem.write_bytes.aio(bytes(data), target)
        except Exception as exc:
            raise self._errors.filesystem(exc, shown or target, action) from exc

    async def list_dir(self, path: str) -> list[FileEntry]:
        """Entries of a workspace directory, sorted by name."""
        relative, target = await self._resolve(path)
        try:
            infos = await self.handle.filesystem.list_files.aio(target)
        except Exception as exc:
            raise self._errors.filesystem(exc, relative, "listing a directory") from exc
        entries = [
            FileEntry(
                name=info.name,
                path=f"{relative}/{info.name}" if relative else info.name,
                is_directory=info.is_dir(),
                size=int(info.size),
            )
            for info in infos
        ]
        return sorted(entries, key=lambda entry: entry.name)


async def _pump(
    stream: Any, name: str, buffer: OutputCapture, on_output: OutputCallback | None
) -> None:
    """Read one output stream to its end, keeping head and tail and forwarding text as it comes."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    async for chunk in stream:
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        buffer.add(data)
        text = decoder.decode(data)
        if text and on_output is not None:
            await on_output(name, text)
    rest = decoder.decode(b"", final=True)
    if rest and on_output is not None:
        await on_output(name, rest)


def _clone_source(repo: str) -> tuple[str, str]:
    """(URL to clone, name to show) for ``owner/repo`` or an https URL without credentials."""
    repo = repo.strip()
    if _REPO_SLUG.match(repo):
        return f"https://github.com/{repo}.git", repo
    parts = urlsplit(repo)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        raise ValidationError(
            "repo must be owner/repo or an https URL without credentials (pass the token as gitToken)",
            details={"repo": repo if "@" not in repo else "<redacted>"},
        )
    return repo, repo


class ModalSandboxProvider:
    """Creates, pauses, resumes, reattaches and sweeps session sandboxes on Modal.

    ``modal_module`` replaces the ``modal`` package (tests pass a fake with the
    same surface); ``image_factory(modal_module)`` builds the sandbox image,
    by default ``sandbox.sandbox.build_image``, the one ``modal deploy`` builds.
    """

    name = "modal"

    def __init__(
        self,
        settings: Settings,
        *,
        modal_module: Any = None,
        image_factory: Any = None,
    ) -> None:
        self._settings = settings
        # Imported here, not at module level: the local provider never pays for it.
        self._modal = modal_module if modal_module is not None else importlib.import_module("modal")
        if image_factory is None:
            from sandbox.sandbox import build_image

            image_factory = build_image
        self._image_factory = image_factory
        self._image: Any = None
        self._errors = _ModalErrors(
            self._modal.exception, settings.modal_app_name, settings.modal_environment
        )
        self._app: Any = None
        self._app_lock = asyncio.Lock()
        self._logs: OrderedDict[str, _SessionLog] = OrderedDict()

    @property
    def isolation(self) -> str:
        """Commands run in a Modal sandbox (gVisor container), never on the server."""
        return "modal"

    # ------------------------------------------------------------------ helpers

    def _log_for(self, session_id: str) -> _SessionLog:
        session_log = self._logs.pop(session_id, None) or _SessionLog()
        self._logs[session_id] = session_log
        while len(self._logs) > LOG_SESSIONS:
            self._logs.popitem(last=False)
        return session_log

    async def _get_app(self) -> Any:
        async with self._app_lock:
            if self._app is None:
                with self._errors.guard("looking up the Modal app"):
                    self._app = await self._modal.App.lookup.aio(
                        self._settings.modal_app_name,
                        environment_name=self._settings.modal_environment or None,
                        create_if_missing=True,
                    )
            return self._app

    def _base_image(self) -> Any:
        if self._image is None:
            self._image = self._image_factory(self._modal)
        return self._image

    async def _create_sandbox(self, session_id: str, image: Any) -> Any:
        settings = self._settings
        app = await self._get_app()
        return await self._modal.Sandbox.create.aio(
            app=app,
            image=image,
            tags={TAG_SESSION: session_id, TAG_MANAGED[0]: TAG_MANAGED[1]},
            timeout=int(settings.modal_timeout_seconds),
            idle_timeout=int(settings.modal_idle_timeout_seconds) or None,
            workdir=WORKDIR,
            cpu=float(settings.modal_cpu) or None,
            memory=int(settings.modal_memory_mib) or None,
            encrypted_ports=[SERVICE_PORT],
        )

    async def _terminate_quietly(self, handle: Any, session_log: _SessionLog | None = None) -> bool:
        try:
            await handle.terminate.aio()
            return True
        except Exception as exc:
            if session_log is not None:
                session_log.add(f"could not terminate {handle.object_id}: {type(exc).__name__}")
            log.warning("modal: terminate %s failed: %s", handle.object_id, exc)
            return False

    # ------------------------------------------------------------------ lifecycle

    async def create(
        self,
        session_id: str,
        *,
        repo: str | None = None,
        git_token: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ModalSandbox:
        """A new sandbox with an empty workspace, or a clone of ``repo``."""
        source = _clone_source(repo) if repo else None
        session_log = self._log_for(session_id)
        if on_progress is not None:
            await on_progress("creating sandbox")
        with self._errors.guard("creating the sandbox", session_log):
            handle = await self._create_sandbox(session_id, self._base_image())
        sandbox = ModalSandbox(handle, session_id, self._errors, session_log)
        session_log.add(f"created sandbox {handle.object_id}")
        try:
            await sandbox.write_absolute(MARKER_PATH, session_id.encode(), "preparing the sandbox")
            if source is not None:
                if on_progress is not None:
                    await on_progress(f"cloning {source[1]}")
                await self._clone(sandbox, source[0], source[1], git_token)
        except BaseException:
            await self._terminate_quietly(handle, session_log)
            raise
        return sandbox

    async def _clone(self, sandbox: ModalSandbox, url: str, shown: str, token: str | None) -> None:
        env = {"GIT_TERMINAL_PROMPT": "0"}
        secret_forms: list[str] = []
        if token:
            parts = urlsplit(url)
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            secret_forms = [token, basic]
            # Scoped to the repo's origin, so a redirect elsewhere never carries it.
            env |= {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{parts.netloc}/.extraheader",
                "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            }

        def scrub(text: str) -> str:
            for secret in secret_forms:
                text = text.replace(secret, "***")
            return text

        with self._errors.guard(f"cloning {shown}", sandbox.session_log):
            code, _, stderr = await sandbox.run_helper(
                "bash",
                "-c",
                _CLONE_SCRIPT,
                "agent-clone",
                url,
                WORKDIR,
                env=env,
                timeout=CLONE_TIMEOUT_SECONDS,
            )
        if code != 0:
            detail = scrub(stderr.decode("utf-8", "replace").strip())[-500:]
            sandbox.session_log.add(f"clone of {shown} failed: exit {code}")
            raise SandboxError(f"Cloning {shown} failed (exit {code}): {detail or 'no output'}")
        if secret_forms:
            config = (await sandbox.read_file(".git/config")).decode("utf-8", "replace")
            if any(secret in config for secret in secret_forms):
                sandbox.session_log.add("the git token reached .git/config; sandbox discarded")
                raise SandboxError(
                    "The git token was written to .git/config; the sandbox was discarded"
                )
        sandbox.session_log.add(f"cloned {shown}")

    async def attach(self, session_id: str, sandbox_id: str) -> ModalSandbox | None:
        """The sandbox if Modal still runs it for this session, else None."""
        session_log = self._log_for(session_id)
        e = self._errors.exc
        with self._errors.guard("reattaching to the sandbox", session_log):
            try:
                handle = await self._modal.Sandbox.from_id.aio(sandbox_id)
            except (e.NotFoundError, e.InvalidError):
                session_log.add(f"sandbox {sandbox_id} not found on Modal")
                return None
            code = await handle.poll.aio()
            if code is not None:
                reason = {124: "reached its timeout", 137: "was terminated"}.get(
                    code, f"exited with {code}"
                )
                session_log.add(f"sandbox {sandbox_id} {reason}")
                return None
            tags = await handle.get_tags.aio()
        if tags.get(TAG_SESSION) != session_id:
            session_log.add(f"sandbox {sandbox_id} belongs to another session")
            return None
        session_log.add(f"reattached to {sandbox_id}")
        return ModalSandbox(handle, session_id, self._errors, session_log)

    async def pause(self, sandbox: Any) -> str:
        """Snapshot the filesystem to an image, stop the sandbox, return the image id."""
        if not isinstance(sandbox, ModalSandbox):
            raise SandboxError("Not a Modal sandbox")
        with self._errors.guard("snapshotting the sandbox", sandbox.session_log):
            image = await sandbox.handle.snapshot_filesystem.aio(
                SNAPSHOT_TIMEOUT_SECONDS, ttl=SNAPSHOT_TTL_SECONDS
            )
        snapshot_id = str(image.object_id)
        sandbox.session_log.add(f"snapshot {snapshot_id} of {sandbox.id}")
        # The snapshot is safe now; a failed terminate only leaves the sandbox to idle out.
        await self._terminate_quietly(sandbox.handle, sandbox.session_log)
        return snapshot_id

    async def resume(self, session_id: str, snapshot_id: str) -> ModalSandbox:
        """A new sandbox from the snapshot; ``SnapshotLost`` if it is gone or is not this session's."""
        session_log = self._log_for(session_id)
        lost = (
            f"The workspace snapshot {snapshot_id} can no longer be restored "
            f"(Modal keeps snapshots {SNAPSHOT_TTL_SECONDS // 86400} days)"
        )
        if not snapshot_id.startswith("im-"):
            session_log.add(f"not a snapshot id: {snapshot_id}")
            raise SnapshotLost(lost, details={"snapshotId": snapshot_id})
        image = self._modal.Image.from_id(snapshot_id)  # no IO: resolved by create
        try:
            handle = await self._create_sandbox(session_id, image)
        except self._errors.exc.NotFoundError as exc:
            session_log.add(f"snapshot {snapshot_id} not found: {exc}")
            raise SnapshotLost(lost, details={"snapshotId": snapshot_id}) from exc
        except Exception as exc:
            raise self._errors.translate(exc, "resuming the sandbox") from exc
        sandbox = ModalSandbox(handle, session_id, self._errors, session_log)
        try:
            marker = (await self._read_marker(sandbox)).decode("utf-8", "replace")
        except BaseException:
            await self._terminate_quietly(handle, session_log)
            raise
        if marker != session_id:
            await self._terminate_quietly(handle, session_log)
            session_log.add(f"snapshot {snapshot_id} does not hold this session's workspace")
            raise SnapshotLost(lost, details={"snapshotId": snapshot_id})
        session_log.add(f"resumed {handle.object_id} from {snapshot_id}")
        return sandbox

    async def _read_marker(self, sandbox: ModalSandbox) -> bytes:
        try:
            return bytes(await sandbox.handle.filesystem.read_bytes.aio(MARKER_PATH))
        except self._errors.exc.SandboxFilesystemNotFoundError:
            return b""
        except Exception as exc:
            raise self._errors.translate(exc, "checking the restored workspace") from exc

    async def terminate(
        self, session_id: str, sandbox_id: str | None, snapshot_id: str | None
    ) -> None:
        """Stop the session's sandbox (and any other tagged with its id). Idempotent.

        Modal has no call to delete a snapshot image; it expires after its TTL.
        """
        session_log = self._log_for(session_id)
        e = self._errors.exc
        with self._errors.guard("terminating the sandbox", session_log):
            if sandbox_id:
                try:
                    handle = await self._modal.Sandbox.from_id.aio(sandbox_id)
                    await handle.terminate.aio()
                except (e.NotFoundError, e.InvalidError):
                    pass
            app = await self._get_app()
            leaked = [
                handle
                async for handle in self._modal.Sandbox.list.aio(
                    app_id=app.app_id, tags={TAG_SESSION: session_id}
                )
            ]
            for handle in leaked:
                await handle.terminate.aio()
        session_log.add(f"terminated (sandbox {sandbox_id or '-'}, snapshot {snapshot_id or '-'})")

    async def logs(self, session_id: str, sandbox_id: str | None, tail: int) -> list[str]:
        """The last ``tail`` lines this server logged for the session (never a token)."""
        session_log = self._logs.get(session_id)
        return session_log.tail(tail) if session_log is not None else []

    async def sweep(self, live_session_ids: set[str]) -> int:
        """Terminate this app's agent-tui sandboxes whose session is not live; return how many."""
        app = await self._get_app()
        terminated = 0
        with self._errors.guard("sweeping sandboxes"):
            handles = [
                handle
                async for handle in self._modal.Sandbox.list.aio(
                    app_id=app.app_id, tags={TAG_MANAGED[0]: TAG_MANAGED[1]}
                )
            ]
            for handle in handles:
                session_id = (await handle.get_tags.aio()).get(TAG_SESSION)
                if session_id in live_session_ids:
                    continue
                if await self._terminate_quietly(handle):
                    terminated += 1
                    log.info("modal: swept sandbox %s of session %s", handle.object_id, session_id)
                    if session_id:
                        self._log_for(session_id).add(f"swept leaked sandbox {handle.object_id}")
        return terminated

    async def close(self) -> None:
        """Forget the app handle; sandboxes keep running on Modal until paused, swept or timed out."""
        self._app = None
