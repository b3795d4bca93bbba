"""OpenCode's errors, apart from its client (which loads httpx) so that the engine
can be built at start-up without it."""

from __future__ import annotations

from backend.errors import SandboxError

__all__ = ["OpenCodeUnavailable"]


class OpenCodeUnavailable(SandboxError):
    """OpenCode inside the sandbox did not answer."""

    default_message = "OpenCode in the sandbox is not answering"
