"""``LazyAgentLoop``: the agent loop, built when first needed.

Importing the anthropic SDK takes seconds (its generated types package is
large), which neither ``agent-tui serve`` nor the embedded app should wait for
before answering. ``warm()`` starts the import in a thread: ``serve`` calls it
right after start-up, the embedded backend a moment after it is ready (so the
import does not slow its first requests). The first turn starts the import
itself if nobody did, and waits for it: a turn never fails because the SDK is
not loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from typing import Any

from backend.agent.types import TurnResult
from backend.settings import Settings


class LazyAgentLoop:
    """Same interface as ``backend.agent.loop.AgentLoop``; builds one on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop: Any = None
        self._import: asyncio.Task[Any] | None = None

    def warm(self) -> None:
        """Import the SDK in a thread now, without waiting for it."""
        if self._import is None:
            self._import = asyncio.create_task(
                asyncio.to_thread(importlib.import_module, "backend.agent.loop"),
                name="import-agent-loop",
            )

    async def _agent(self) -> Any:
        if self._loop is None:
            self.warm()
            assert self._import is not None
            module = await asyncio.shield(self._import)
            if self._loop is None:
                self._loop = module.AgentLoop(self._settings)
        return self._loop

    async def run_turn(self, **kwargs: Any) -> TurnResult:
        """``AgentLoop.run_turn``."""
        return await (await self._agent()).run_turn(**kwargs)

    async def resume_turn(self, **kwargs: Any) -> TurnResult:
        """``AgentLoop.resume_turn``."""
        return await (await self._agent()).resume_turn(**kwargs)

    async def compact(self, **kwargs: Any) -> Any:
        """``AgentLoop.compact``."""
        return await (await self._agent()).compact(**kwargs)

    async def list_models(self) -> Any:
        """``AgentLoop.list_models``."""
        return await (await self._agent()).list_models()

    async def model_info(self, model_id: str) -> Any:
        """``AgentLoop.model_info``."""
        return await (await self._agent()).model_info(model_id)

    async def aclose(self) -> None:
        if self._loop is not None:
            await self._loop.aclose()
        elif self._import is not None and not self._import.done():
            # The thread finishes the import on its own; nothing to wait for.
            self._import.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._import
