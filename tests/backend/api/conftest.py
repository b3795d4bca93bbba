"""A real server for API tests: uvicorn on a loopback port in the test's event
loop, the fake model on another port, a SQLite store in a temporary folder
(or PostgreSQL), and helpers to mint keys."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from httpx_sse import aconnect_sse

from backend.app import create_app
from backend.auth import create_api_key
from backend.settings import Settings
from backend.store.base import Store
from tests.fakes.fake_anthropic import FakeAnthropic
from tests.fakes.upstash_shim import upstash_shim  # noqa: F401  (a fixture)


class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers (pytest owns the process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Api:
    """A running server and what tests need to talk to it."""

    url: str
    http: httpx.AsyncClient
    settings: Settings
    app: Any
    model: FakeAnthropic
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.app.state.services.store

    @property
    def services(self) -> Any:
        return self.app.state.services

    async def key(
        self, user: str = "alice", scopes: tuple[str, ...] = ("sessions", "admin"), **kw: Any
    ) -> str:
        """A new key for ``user``."""
        _, key = await create_api_key(
            self.store, user_id=user, name=f"{user}-key", scopes=list(scopes), **kw
        )
        return key

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def make_settings(tmp_path: Path, model_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        data_dir=tmp_path / "data",
        config_dir=tmp_path / "config",
        database_url=str(tmp_path / "data" / "test.db"),
        anthropic_api_key="test-key",
        anthropic_base_url=model_url,
        unsafe_local_sandbox=True,
    )
    values.update(overrides)
    return Settings(**values)


def server_socket() -> socket.socket:
    """A bound loopback socket on a free port, for ``running_server(sock=...)`` when the
    settings must know the server's URL (``AGENT_TUI_PUBLIC_URL``) before it starts."""
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # proto set: uvicorn turns Nagle off
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def running_server(
    settings: Settings, *, sock: socket.socket | None = None, **services: Any
) -> AsyncIterator[tuple[str, Any]]:
    """Serve ``create_app(settings)`` on a free loopback port until the block ends."""
    app = create_app(settings, **services)
    sock = sock or server_socket()
    port = sock.getsockname()[1]
    server = QuietServer(
        uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=1
        )
    )
    task = asyncio.create_task(server.serve([sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


@pytest.fixture
def fake_model() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@contextlib.asynccontextmanager
async def api_for(
    settings: Settings,
    fake_model: FakeAnthropic,
    *,
    sock: socket.socket | None = None,
    **services: Any,
) -> AsyncIterator[Api]:
    async with running_server(settings, sock=sock, **services) as (url, app):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield Api(url=url, http=http, settings=settings, app=app, model=fake_model)


@pytest.fixture
async def api(tmp_path: Path, fake_model: FakeAnthropic) -> AsyncIterator[Api]:
    """The server with the embedded defaults (SQLite, memory limiter, local sandbox)."""
    async with api_for(make_settings(tmp_path, fake_model.url), fake_model) as running:
        yield running


@contextlib.asynccontextmanager
async def turn_stream(
    api: Api, key: str, session: str, content: str, *, read_timeout: float | None = None
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """Send ``content`` to ``session`` and give its turn's events (the ``data`` JSON)
    as they stream, for a test that reacts to them; leaving the block closes the stream.
    ``read_timeout`` bounds each read (the client's default when None)."""
    async with aconnect_sse(
        api.http,
        "POST",
        f"/v1/sessions/{session}/messages",
        headers=api.auth(key),
        json={"content": content},
        **({"timeout": read_timeout} if read_timeout is not None else {}),
    ) as source:

        async def events() -> AsyncIterator[dict[str, Any]]:
            async for sse in source.aiter_sse():
                yield json.loads(sse.data)

        yield events()
