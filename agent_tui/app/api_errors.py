"""Turning client errors into sentences a user can act on.

``agent_tui.client`` (and so httpx) is imported only once the backend is
reached, to keep the first frame fast; these helpers therefore find
``AgentApiError`` through ``sys.modules`` instead of importing it.
"""

from __future__ import annotations

import sys
from typing import Any

# What to tell the user for the codes they can do something about.
_HINTS = {
    "INVALID_API_KEY": "The API key was rejected",
    "FORBIDDEN": "This API key lacks the scope for that",
    "RATE_LIMIT_EXCEEDED": "Rate limit reached",
    "SESSION_LIMIT_EXCEEDED": "Too many active sessions: pause or delete one first",
    "SESSION_BUSY": "The session is busy",
    "SESSION_TERMINATED": "This session was deleted; its history stays readable",
    "SESSION_NOT_FOUND": "That session no longer exists",
    "SANDBOX_ERROR": "The sandbox failed",
    "SERVICE_UNAVAILABLE": "The backend is unavailable (database down?)",
    "PAYLOAD_TOO_LARGE": "The message is too large",
}


def api_error(exc: BaseException) -> Any | None:
    """``exc`` if it is an ``AgentApiError``, else None."""
    client = sys.modules.get("agent_tui.client")
    error_type = getattr(client, "AgentApiError", None)
    if error_type is not None and isinstance(exc, error_type):
        return exc
    return None


def error_code(exc: BaseException) -> str | None:
    """The contract's error code of ``exc``, or None for other exceptions."""
    error = api_error(exc)
    return getattr(error, "code", None) if error is not None else None


def describe(exc: BaseException) -> str:
    """One or two sentences for a notification: what failed and, when known, what to do."""
    error = api_error(exc)
    if error is None:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    code = getattr(error, "code", "") or ""
    message = getattr(error, "message", "") or str(error)
    hint = _HINTS.get(code)
    if code == "RATE_LIMIT_EXCEEDED":
        details = getattr(error, "details", {}) or {}
        reset = details.get("resetAt") or details.get("retryAfter")
        return f"{hint}; try again {('after ' + str(reset)) if reset else 'in a minute'}."
    if hint and message and hint.lower() not in message.lower():
        return f"{hint}: {message}"
    return message or hint or code
