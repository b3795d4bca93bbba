"""The backend embedded in the TUI: uvicorn in the app's own event loop, on a private socket.

``agent-tui`` with no flags runs the whole Agent API in-process so the TUI can use
the very same ``AgentClient`` as in remote mode. The server listens on a Unix
socket inside a fresh 0700 directory (only this user can connect), or, where
there are no Unix sockets, on a random loopback port; either way requests need
the local admin key, which is provisioned on first run and kept in the 0600
config file.

``httpx.ASGITransport`` is not an option: it buffers a whole response before
returning it, so an SSE stream would never arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from agent_tui.config import load_config, save_config
from backend.settings import Settings

if TYPE_CHECKING:
    import uvicorn

    from backend.store.base import Store

log = logging.getLogger(__name__)

EMBEDDED_BASE_URL = "http://agent-tui"
EMBEDDED_USER_ID = "local"
EMBEDDED_KEY_NAME = "embedded"
EMBEDDED_KEY_SCOPES = ["sessions", "admin"]
STARTUP_TIMEOUT = 30.0
# ApiServer ends event streams at shutdown; a request still running after this
# long (a slow file read, say) is cancelled rather than holding the app's exit.
GRACEFUL_SHUTDOWN_SECONDS = 3.0


class EmbeddedStartError(RuntimeError):
    """The embedded backend could not start; the message says why."""


class EmbeddedBackend:
    """The Agent API served inside the current process and event loop.

    ``start()`` returns what ``AgentClient`` needs (base URL, key, transport);
    ``stop()`` shuts the server down gracefully (lifespan shutdown included).
    ``start_seconds`` is how long ``start()`` took.
    """

    def __init__(self, settings: Settings, *, unix_socket: bool | None = None) -> None:
        """``unix_socket``: None picks a Unix socket where the platform has them, else
        a random loopback port (reachable by other local users, so only the key
        protects it)."""
        self.settings = settings
        self.unix_socket = hasattr(socket, "AF_UNIX") if unix_socket is None else unix_socket
        self.start_seconds: float | None = None
        # Seconds from the start of start() to: modules loaded ("load"), server
        # listening ("startup"), key ready ("total").
        self.timings: dict[str, float] = {}
        self.socket_path: Path | None = None
        self._runtime_dir: Path | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._app: Any = None
        self._startup_error: BaseException | None = None
        self._sockets: list[socket.socket] = []
        self._lock_file: Any = None

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._task is not None and not self._task.done()

    async def start(self) -> tuple[str, str, httpx.AsyncBaseTransport]:
        """Start the server in this event loop; return ``(base_url, api_key, transport)``."""
        if self._task is not None:
            raise RuntimeError("EmbeddedBackend.start() was already called")
        began = time.perf_counter()
        self._lock_data_dir()
        sockets: list[socket.socket] | None = None
        unix = self.unix_socket
        where: dict[str, Any] = {}
        if unix:
            self._runtime_dir = Path(tempfile.mkdtemp(prefix="agent-tui-"))  # mode 0700
            self.socket_path = self._runtime_dir / "api.sock"
            where["uds"] = str(self.socket_path)
        else:
            # IPPROTO_TCP: uvicorn turns Nagle off only on sockets that name it.
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            listener.bind(("127.0.0.1", 0))
            sockets = self._sockets = [listener]
        try:
            # Loading FastAPI, uvicorn, the backend and the SDKs it uses takes most of
            # a second: a thread does it so the TUI's loop keeps drawing meanwhile.
            self._server = await asyncio.to_thread(self._load, where)
            self.timings["load"] = time.perf_counter() - began
            self._task = asyncio.create_task(
                self._serve(sockets), name="agent-tui embedded backend"
            )
            await self._wait_started()
            self.timings["startup"] = time.perf_counter() - began
            api_key = await self._provision_key()
        except BaseException:
            await self.stop()
            raise

        if unix:
            base_url = EMBEDDED_BASE_URL
            transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
                uds=str(self.socket_path)
            )
        else:
            assert sockets is not None
            port = sockets[0].getsockname()[1]
            base_url = f"http://127.0.0.1:{port}"
            transport = httpx.AsyncHTTPTransport()
        self.start_seconds = self.timings["total"] = time.perf_counter() - began
        log.info("embedded backend started in %.3f s", self.start_seconds)
        return base_url, api_key, transport

    async def stop(self) -> None:
        """Shut the server down gracefully and remove its socket. Safe to call twice."""
        server, task = self._server, self._task
        if server is not None and task is not None and not task.done():
            server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(task), GRACEFUL_SHUTDOWN_SECONDS + 10)
            except TimeoutError:
                log.warning("embedded backend did not stop in time; cancelling it")
                server.force_exit = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for sock in self._sockets:
            sock.close()  # uvicorn closes it too; this covers a start that failed early
        self._sockets = []
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def _lock_data_dir(self) -> None:
        """One embedded backend per data directory: two would each own actors of
        the same sessions in one SQLite file."""
        import fcntl

        data_dir = self.settings.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        lock_file = open(data_dir / "embedded.lock", "a+")  # held until stop()
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            raise EmbeddedStartError(
                f"Another agent-tui is already running on {data_dir}. Close it first, "
                "or connect to one backend from both with `agent-tui serve` and --remote."
            ) from None
        self._lock_file = lock_file

    # ---- internals

    def _load(self, where: dict[str, Any]) -> uvicorn.Server:
        """Import the server side, build the app and its server (runs in a thread)."""
        import uvicorn

        from backend.app import create_app
        from backend.server import ApiServer

        _preload(self.settings)
        self._app = create_app(self.settings)
        config = uvicorn.Config(
            _LifespanProbe(self._app, self),
            proxy_headers=False,
            lifespan="on",
            # The TUI owns the terminal: uvicorn must not configure logging or print.
            log_config=None,
            log_level="warning",
            access_log=False,
            ws="none",  # no websockets routes; skips importing a websockets stack
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            server_header=False,
            **where,
        )
        config.load()
        # ApiServer ends open event streams at shutdown; without capture_signals
        # uvicorn leaves SIGINT/SIGTERM (Ctrl+C) to Textual.
        return ApiServer(config, app=self._app, capture_signals=False)

    async def _serve(self, sockets: list[socket.socket] | None) -> None:
        assert self._server is not None
        try:
            await self._server.serve(sockets)
        except SystemExit:
            # uvicorn calls sys.exit() when the lifespan startup fails; in a task of
            # the TUI's loop that would end the whole app, so it stops here.
            pass

    async def _wait_started(self) -> None:
        assert self._server is not None and self._task is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if self._task.done():
                raise EmbeddedStartError(self._failure_message())
            if time.monotonic() > deadline:
                raise EmbeddedStartError(
                    f"The embedded backend did not start within {STARTUP_TIMEOUT:g} s"
                )
            await asyncio.sleep(0.005)

    def _failure_message(self) -> str:
        exc = self._startup_error
        if exc is None and self._task is not None and not self._task.cancelled():
            exc = self._task.exception()
        if exc is None:
            return "The embedded backend failed to start (no reason given; see the log)"
        return f"The embedded backend failed to start: {type(exc).__name__}: {exc}"

    async def _provision_key(self) -> str:
        """The local admin key from the config file, or a new one if it no longer works."""
        from backend.auth import create_api_key, hash_key
        from backend.records import utcnow

        config_dir = self.settings.config_dir
        saved = load_config(config_dir).embedded_api_key
        async with self._store() as store:
            if saved:
                record = await store.get_key_by_hash(hash_key(saved))
                if record is not None and record.usable_at(utcnow()) and "admin" in record.scopes:
                    return saved
            _, key = await create_api_key(
                store,
                user_id=EMBEDDED_USER_ID,
                name=EMBEDDED_KEY_NAME,
                scopes=EMBEDDED_KEY_SCOPES,
            )
        # Read again just before writing: keep whatever else changed meanwhile.
        config = load_config(config_dir)
        config.embedded_api_key = key
        save_config(config_dir, config)
        return key

    @contextlib.asynccontextmanager
    async def _store(self) -> Any:
        """The running app's store, or a connection of our own if the app does not expose one."""
        store = _app_store(self._app)
        if store is not None:
            yield store
            return
        from backend.store import open_store

        own: Store = open_store(self.settings)
        await own.migrate()
        try:
            yield own
        finally:
            await own.close()


def _preload(settings: Settings) -> None:
    """Import what the app's lifespan will import, so that it does not block the loop.

    Only an optimisation: a module that moved is simply imported later, by the app.
    """
    names = ["backend.agent.loop"]
    names.append(
        "sandbox.modal_provider" if settings.sandbox_provider == "modal" else "sandbox.local"
    )
    names.append("backend.store.sqlite" if settings.sqlite_path else "backend.store.postgres")
    for name in names:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _app_store(app: Any) -> Store | None:
    """The store the app's lifespan opened (``app.state.services.store``), if it is there."""
    services = getattr(getattr(app, "state", None), "services", None)
    store = getattr(services, "store", None)
    return store if store is not None and hasattr(store, "get_key_by_hash") else None


class _LifespanProbe:
    """Passes every ASGI call through, remembering why a lifespan startup failed.

    uvicorn only logs that failure; the TUI needs it to tell the user.
    """

    def __init__(self, app: Any, backend: EmbeddedBackend) -> None:
        self.app = app
        self.backend = backend

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.backend._startup_error = exc
            raise
