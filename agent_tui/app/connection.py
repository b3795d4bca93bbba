"""How the app reaches the Agent API: an embedded backend it owns, or a remote server.

Both give the app an ``AgentClient``; nothing else in the UI knows which mode it
is in. httpx, the client and the backend are imported inside ``open()`` so the
first frame does not wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent_tui.client import AgentClient
    from agent_tui.embedded import EmbeddedBackend
    from backend.settings import Settings


class BackendConnection(Protocol):
    """What the app needs from a way of reaching the backend."""

    mode: str  # "embedded" or "remote"
    label: str  # shown in the status line
    api_key: str | None  # the key the client uses (to find its own scopes)
    # Called with (text, severity) when the connection has something to tell the user.
    on_notice: Callable[[str, str], None] | None

    def needs_model_setup(self) -> bool:
        """True when the model cannot be reached without a key the user must give."""
        ...

    def save_model_setup(self, api_key: str, base_url: str) -> str:
        """Remember the model key / base URL; return where it was saved."""
        ...

    def limitations(self) -> list[str]:
        """Sentences about what will not work here (no bwrap, ...)."""
        ...

    def prestart(self) -> None:
        """Begin whatever ``open`` will wait for, before the app has loaded (may do nothing)."""
        ...

    async def open(self) -> AgentClient:
        """Start or dial the backend and return a client that reached it."""
        ...

    async def close(self) -> None:
        """Close the client and stop whatever ``open`` started."""
        ...


log = logging.getLogger("agent_tui.app")

# How often the embedded backend's process is checked, and how many restarts in
# RESTART_WINDOW_SECONDS are tried before giving up (a backend that dies at once).
WATCH_SECONDS = 0.5
MAX_RESTARTS = 3
RESTART_WINDOW_SECONDS = 60.0


class EmbeddedConnection:
    """The backend runs in a child process the app owns.

    If that process dies (a crash, the OOM killer), it is started again on the
    same socket: the client reconnects by itself, event streams resume from
    their last event, and messages typed meanwhile wait in the outbox and are
    sent. ``on_notice(text, severity)`` tells the user.
    """

    mode = "embedded"
    label = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key: str | None = None
        self.backend: EmbeddedBackend | None = None
        self.client: AgentClient | None = None
        self.on_notice: Callable[[str, str], None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    def needs_model_setup(self) -> bool:
        return not (self.settings.anthropic_api_key or self.settings.anthropic_base_url)

    def save_model_setup(self, api_key: str, base_url: str) -> str:
        from agent_tui.config import load_config, save_config

        config = load_config(self.settings.config_dir)
        if api_key:
            config.anthropic_api_key = api_key
        if base_url:
            config.anthropic_base_url = base_url
        path = save_config(self.settings.config_dir, config)
        self.settings = config.apply_to(self.settings)
        return str(path)

    def limitations(self) -> list[str]:
        notes: list[str] = []
        if (
            self.settings.sandbox_provider == "local"
            and not self.settings.unsafe_local_sandbox
            and shutil.which("bwrap") is None
        ):
            notes.append(
                "bubblewrap (bwrap) is not installed, so local sandboxes cannot start and new "
                "sessions will fail. Install it (apt-get install bubblewrap), set "
                "SANDBOX_PROVIDER=modal, or AGENT_TUI_UNSAFE_LOCAL_SANDBOX=true to run commands "
                "unisolated. History and API keys still work."
            )
        return notes

    def prestart(self) -> None:
        """Spawn the backend's process now, before the app has loaded, so that both load
        at once (on two cores). Skipped when the model still needs setting up; a
        failure here is left for ``open()`` to report on screen."""
        if self.backend is not None or self.needs_model_setup():
            return
        from agent_tui.embedded import EmbeddedBackend

        backend = EmbeddedBackend(self.settings)
        try:
            backend.spawn()
        except Exception:
            return
        self.backend = backend

    async def open(self) -> AgentClient:
        from agent_tui.embedded import EmbeddedBackend

        if self.backend is None or self.backend.settings != self.settings:
            if self.backend is not None:
                await self.backend.stop()
            self.backend = EmbeddedBackend(self.settings)
        try:
            base_url, api_key, transport = await self.backend.start()
        except BaseException:
            self.backend = None  # a retry starts afresh
            raise
        from agent_tui.client import AgentClient  # start() loaded it in a thread

        self.api_key = api_key
        self.client = AgentClient(base_url, api_key, transport=transport)
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch())
        return self.client

    async def _watch(self) -> None:
        """Restart the backend's process when it dies (bounded: a crash loop gives up)."""
        restarts: list[float] = []
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            backend = self.backend
            code = backend.exit_code if backend is not None else None
            if backend is None or code is None:
                continue
            log.warning("the embedded backend exited with code %s; restarting it", code)
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < RESTART_WINDOW_SECONDS] + [now]
            if len(restarts) > MAX_RESTARTS:
                self._notice(
                    f"The embedded backend keeps stopping (exit code {code}); not restarting "
                    f"it again. Its log: {self.settings.data_dir / 'agent-tui.log'}",
                    "error",
                )
                return
            self._notice(f"The embedded backend stopped (exit code {code}); restarting it…")
            try:
                await backend.restart()
            except Exception as exc:
                log.error("restarting the embedded backend failed: %s", exc)
                self._notice(f"Could not restart the embedded backend: {exc}", "error")
                return
            log.info("the embedded backend was restarted")
            self._notice("The embedded backend is back; nothing typed was lost.", "information")

    def _notice(self, text: str, severity: str = "warning") -> None:
        if self.on_notice is not None:
            self.on_notice(text, severity)

    async def close(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if self.client is not None:
            await self.client.aclose()
            self.client = None
        if self.backend is not None:
            await self.backend.stop()
            self.backend = None


class RemoteConnection:
    """A backend somewhere else, reached over HTTP with an API key."""

    mode = "remote"

    def __init__(self, url: str, api_key: str | None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.label = f"remote {self.url}"
        self.client: AgentClient | None = None
        self.on_notice: Callable[[str, str], None] | None = None  # nothing to tell

    def needs_model_setup(self) -> bool:
        return False  # the server holds the model key

    def save_model_setup(self, api_key: str, base_url: str) -> str:
        raise NotImplementedError("a remote backend keeps its own model key")

    def limitations(self) -> list[str]:
        return []

    def prestart(self) -> None:
        pass  # dialling is quick; open() does it

    async def open(self) -> AgentClient:
        from agent_tui.client import AgentApiError, AgentClient

        if not self.api_key:
            # A client-side code: nothing was sent, so nothing was rejected.
            raise AgentApiError("MISSING_API_KEY", f"No API key for {self.url}.")
        if not self.url.startswith(("http://", "https://")):
            raise AgentApiError(
                "VALIDATION_ERROR", f"{self.url!r} is not an http:// or https:// URL."
            )
        client = AgentClient(self.url, self.api_key)
        try:
            await client.health()
            # /health needs no key: one authenticated call tells a bad key apart now.
            await client.list_sessions(limit=1)
        except BaseException:
            await client.aclose()
            raise
        self.client = client
        return client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None
