"""The client's one exception type, built from the contract's error body or a transport failure."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

CONNECTION_ERROR = "CONNECTION_ERROR"
INVALID_RESPONSE = "INVALID_RESPONSE"
TIMEOUT = "TIMEOUT"

M = TypeVar("M", bound=BaseModel)

_KEY_HINT = (
    "Check the API key (--api-key, the AGENT_TUI_API_KEY variable, or the saved profile "
    "in the config file)."
)


class AgentApiError(Exception):
    """Every failure of an Agent API call.

    ``code``, ``message`` and ``details`` come from the contract's error body
    ``{"error": {code, message, details}}``; ``status`` is the HTTP status, or 0 when
    no HTTP answer arrived (``code == "CONNECTION_ERROR"``) or the failure is the
    client's own (a session that ended in ``error`` while waiting, a timeout).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 0,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.status = status
        self.details = details or {}
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(message)

    def __str__(self) -> str:
        where = f"{self.code}, HTTP {self.status}" if self.status else self.code
        return f"{self.message} ({where})"

    def __repr__(self) -> str:
        return f"AgentApiError(code={self.code!r}, status={self.status}, message={self.message!r})"


def error_from_body(status: int, body: bytes, headers: httpx.Headers) -> AgentApiError:
    """The error an HTTP answer with a non-2xx status stands for.

    A body without the contract's shape (a proxy's HTML page, an empty 502) becomes
    code ``HTTP_<status>`` so the caller still gets one exception type.
    """
    code, message, details = f"HTTP_{status}", "", {}
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code = error["code"]
        message = str(error.get("message") or "")
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    if not message:
        text = body[:200].decode("utf-8", "replace").strip()
        reason = httpx.codes.get_reason_phrase(status) or "Error"
        message = f"HTTP {status} {reason}" + (f": {text}" if text and payload is None else "")
    if status == 401:
        message = f"{message.rstrip('.')}. {_KEY_HINT}"
    return AgentApiError(
        code,
        message,
        status=status,
        details=details,
        request_id=headers.get("x-request-id"),
        retry_after=_retry_after(headers),
    )


def connection_error(base_url: str, exc: Exception) -> AgentApiError:
    """A transport failure (refused, DNS, timeout, dropped) as ``CONNECTION_ERROR``."""
    if isinstance(exc, httpx.TimeoutException):
        what = "timed out"
    elif isinstance(exc, httpx.ConnectError):
        what = "could not connect"
    else:
        what = "the connection failed"
    reason = str(exc) or type(exc).__name__
    return AgentApiError(
        CONNECTION_ERROR,
        f"Cannot reach the Agent API at {base_url} ({what}: {reason}). "
        "Check that the server is running and that the URL and port are right.",
        details={"url": base_url, "reason": type(exc).__name__},
    )


def _retry_after(headers: httpx.Headers) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def parse(model: type[M], data: Any) -> M:
    """Validate a response body against a wire model; a mismatch is ``INVALID_RESPONSE``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise AgentApiError(
            INVALID_RESPONSE,
            f"The server's answer does not match {model.__name__}: {exc.errors()[:3]}",
        ) from exc
