"""How the app reaches the Agent API: an embedded backend it owns, or a remote server.

Both give the app an ``AgentClient``; nothing else in the UI knows which mode it
is in. httpx, the client and the backend are imported inside ``open()`` so the
first frame does not wait for them.
"""

from __future__ import annotations

import shutil
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


class EmbeddedConnection:
    """The backend runs inside the app, on the app's event loop."""

    mode = "embedded"
    label = "embedded"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api_key: str | None = None
        self.backend: EmbeddedBackend | None = None
        self.client: AgentClient | None = None

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
        return self.client

    async def close(self) -> None:
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
