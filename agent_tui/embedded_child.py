"""The embedded backend's own process: ``python -m agent_tui.embedded_child``.

``EmbeddedBackend`` (``agent_tui.embedded``) starts it and writes one JSON line
on its stdin: the settings and where to listen. It serves the Agent API there
(uvicorn with ``ApiServer``), provisions the local admin key, and answers one
JSON line on stdout: ``{"ok": true, "apiKey": ..., "timings": ...}`` or
``{"ok": false, "error": ...}``. It shuts down gracefully when its stdin ends:
the app closed it, or the app is gone.

Why a process of its own: loading FastAPI and the backend, and later the
anthropic SDK (two seconds of CPU), would otherwise hold the GIL the app's UI
needs; in its own process it loads on another core while the UI draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from backend.settings import RateLimit, Settings

log = logging.getLogger("agent_tui.embedded")

STARTUP_TIMEOUT = 30.0
# ApiServer ends event streams at shutdown; a request still running after this
# long (a slow file read, say) is cancelled rather than holding the app's exit.
GRACEFUL_SHUTDOWN_SECONDS = 3.0
# The anthropic SDK import is started this long after the backend is ready, so it
# does not compete with the first requests (a message typed at launch) for this
# process's CPU; a turn that needs the model earlier starts it at once.
AGENT_WARM_DELAY_SECONDS = 0.5

EMBEDDED_USER_ID = "local"
EMBEDDED_KEY_NAME = "embedded"
EMBEDDED_KEY_SCOPES = ["sessions", "admin"]


def settings_to_json(settings: Settings) -> dict[str, Any]:
    """``Settings`` as JSON (paths, rate limits and tuples tagged, to come back as such)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Path):
            value = {"path": str(value)}
        elif isinstance(value, RateLimit):
            value = {"rate": [value.limit, value.window_seconds]}
        elif isinstance(value, tuple):
            value = {"tuple": list(value)}
        out[f.name] = value
    return out


def settings_from_json(data: dict[str, Any]) -> Settings:
    """The inverse of ``settings_to_json``."""
    values: dict[str, Any] = {}
    for name, value in data.items():
        if isinstance(value, dict) and "path" in value:
            value = Path(value["path"])
        elif isinstance(value, dict) and "rate" in value:
            value = RateLimit(*value["rate"])
        elif isinstance(value, dict) and "tuple" in value:
            value = tuple(value["tuple"])
        values[name] = value
    return Settings(**values)


def main() -> int:
    """Read the spec line, serve until stdin ends; the first stdout line says how it went."""
    spec = json.loads(sys.stdin.readline())
    settings = settings_from_json(spec["settings"])
    from agent_tui.app import log_to_file

    log_to_file(settings)  # the app's log file: one log for both processes
    try:
        return asyncio.run(_serve(settings, spec))
    except BaseException as exc:  # whatever it is, the app must hear why
        log.exception("the embedded backend failed")
        _answer({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1


def _answer(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve(settings: Settings, spec: dict[str, Any]) -> int:
    began = time.perf_counter()
    timings: dict[str, float] = {}
    import uvicorn

    from backend.agent.lazy import LazyAgentLoop
    from backend.app import create_app
    from backend.server import ApiServer

    _preload(settings)
    agent = LazyAgentLoop(settings)  # warmed below, once the backend is ready
    app = create_app(settings, agent=agent)
    probe = _LifespanProbe(app)
    where: dict[str, Any] = {"uds": spec["uds"]} if spec.get("uds") else {}
    config = uvicorn.Config(
        probe,
        proxy_headers=False,
        lifespan="on",
        log_config=None,  # logging is set up above; uvicorn must not print
        log_level="warning",
        access_log=False,
        ws="none",  # no websockets routes; skips importing a websockets stack
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
        **where,
    )
    config.load()
    server = ApiServer(config, app=app, capture_signals=False)
    sockets = [socket.socket(fileno=spec["fd"])] if spec.get("fd") is not None else None
    timings["load"] = time.perf_counter() - began

    task = asyncio.create_task(_run(server, sockets))
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if task.done():
            reason = probe.error or (None if task.cancelled() else task.exception())
            _answer({"ok": False, "error": f"{type(reason).__name__}: {reason}"})
            return 1
        if time.monotonic() > deadline:
            _answer({"ok": False, "error": f"did not start within {STARTUP_TIMEOUT:g} s"})
            server.should_exit = True
            await task
            return 1
        await asyncio.sleep(0.005)
    timings["startup"] = time.perf_counter() - began
    api_key = await _provision_key(settings, app)
    timings["total"] = time.perf_counter() - began
    timings["cpu"] = time.process_time()  # this process's CPU seconds until ready
    _answer({"ok": True, "apiKey": api_key, "timings": timings})
    log.info("embedded backend started in %.3f s (pid %d)", timings["total"], os.getpid())

    loop = asyncio.get_running_loop()
    loop.call_later(AGENT_WARM_DELAY_SECONDS, agent.warm)
    stdin_closed = asyncio.Event()
    threading.Thread(
        target=_wait_for_eof, args=(loop, stdin_closed), name="stdin-eof", daemon=True
    ).start()
    waiter = asyncio.create_task(stdin_closed.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    await task
    waiter.cancel()
    return 0


async def _run(server: Any, sockets: list[socket.socket] | None) -> None:
    with contextlib.suppress(SystemExit):  # uvicorn exits when the lifespan fails
        await server.serve(sockets)


def _wait_for_eof(loop: asyncio.AbstractEventLoop, closed: asyncio.Event) -> None:
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(4096):
            pass
    loop.call_soon_threadsafe(closed.set)


def _preload(settings: Settings) -> None:
    """What the lifespan would do later on the loop: import the store and sandbox
    modules, run the bubblewrap probe (a subprocess, cached for the process).
    Not the agent loop: the anthropic SDK is not needed to be ready."""
    names = ["sandbox.modal_provider" if settings.sandbox_provider == "modal" else "sandbox.local"]
    names.append("backend.store.sqlite" if settings.sqlite_path else "backend.store.postgres")
    for name in names:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if settings.sandbox_provider == "local" and shutil.which("bwrap") is not None:
        with contextlib.suppress(ImportError):
            from sandbox.local import bwrap_available

            bwrap_available()


async def _provision_key(settings: Settings, app: Any) -> str:
    """The local admin key from the config file, or a new one if it no longer works."""
    from agent_tui.config import load_config, save_config
    from backend.auth import create_api_key, hash_key
    from backend.records import utcnow

    store = app.state.services.store
    saved = load_config(settings.config_dir).embedded_api_key
    if saved:
        record = await store.get_key_by_hash(hash_key(saved))
        if record is not None and record.usable_at(utcnow()) and "admin" in record.scopes:
            return saved
    _, key = await create_api_key(
        store, user_id=EMBEDDED_USER_ID, name=EMBEDDED_KEY_NAME, scopes=EMBEDDED_KEY_SCOPES
    )
    # Read again just before writing: keep whatever else changed meanwhile.
    config = load_config(settings.config_dir)
    config.embedded_api_key = key
    save_config(settings.config_dir, config)
    return key


class _LifespanProbe:
    """Passes every ASGI call through, remembering why a lifespan startup failed
    (uvicorn only logs it; the app needs it to tell the user)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.error: BaseException | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.error = exc
            raise


if __name__ == "__main__":
    raise SystemExit(main())
