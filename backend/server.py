"""``ApiServer``: uvicorn, made to end open event streams cleanly when it stops.

On shutdown uvicorn stops accepting, lets in-flight requests finish and, after
its grace period, cancels what still runs: open SSE streams would be cut in the
middle of a chunk. Ending them first gives clients a clean end of stream, after
which they reconnect with ``Last-Event-ID`` (to this server once it is back, or
to another instance).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn


class ApiServer(uvicorn.Server):
    """A uvicorn server for ``create_app``'s app.

    ``capture_signals=False`` leaves SIGINT/SIGTERM to the host program (the
    embedded backend inside the TUI).
    """

    def __init__(self, config: uvicorn.Config, *, app: Any, capture_signals: bool = True) -> None:
        super().__init__(config)
        self._api_app = app
        self._capture = capture_signals

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        if self._capture:
            return super().capture_signals()
        return _no_signals()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        services = getattr(getattr(self._api_app, "state", None), "services", None)
        if services is not None:
            services.registry.end_streams()
        await super().shutdown(sockets)


@contextlib.contextmanager
def _no_signals() -> Iterator[None]:
    yield
