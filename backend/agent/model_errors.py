"""Turning the Anthropic SDK's exceptions into ``ModelError``s a user can read.

The SDK has already retried what is worth retrying (connection errors, 408,
409, 429, 5xx, 529) by the time an exception reaches us. A mid-stream
``event: error`` is never retried and arrives as a plain ``APIStatusError``
with ``status_code`` 200, so the error's ``type`` decides before its class.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2

from backend.agent.types import ModelError, TurnResult

__all__ = ["MODEL_EXCEPTIONS", "model_error"]

# What the streaming call can raise that means "the model API failed".
# ValueError: the SDK could not parse a tool's input JSON from the stream.
MODEL_EXCEPTIONS: tuple[type[BaseException], ...] = (
    anthropic.AnthropicError,
    httpx2.TransportError,
    ValueError,
)

_BY_TYPE = {
    "rate_limit_error": "MODEL_RATE_LIMITED",
    "overloaded_error": "MODEL_OVERLOADED",
    "authentication_error": "MODEL_AUTH_ERROR",
    "permission_error": "MODEL_AUTH_ERROR",
    "invalid_request_error": "MODEL_BAD_REQUEST",
    "not_found_error": "MODEL_BAD_REQUEST",
    "request_too_large": "MODEL_BAD_REQUEST",
}

_SUMMARY = {
    "MODEL_RATE_LIMITED": "The model API's rate limit was reached; try again shortly.",
    "MODEL_OVERLOADED": "The model API is overloaded; try again in a moment.",
    "MODEL_UNAVAILABLE": "The model API could not be reached.",
    "MODEL_AUTH_ERROR": "The model API refused the API key.",
    "MODEL_BAD_REQUEST": "The model API refused the request.",
    "MODEL_ERROR": "The model API failed.",
}


def _code(exc: BaseException) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        if exc.type in _BY_TYPE:
            return _BY_TYPE[exc.type]
        if isinstance(exc, anthropic.RateLimitError):
            return "MODEL_RATE_LIMITED"
        if isinstance(exc, anthropic.OverloadedError):
            return "MODEL_OVERLOADED"
        if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
            return "MODEL_AUTH_ERROR"
        if isinstance(exc, anthropic.BadRequestError | anthropic.NotFoundError):
            return "MODEL_BAD_REQUEST"
        return "MODEL_ERROR"
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return "MODEL_UNAVAILABLE"
    if isinstance(exc, anthropic.CredentialsError):
        return "MODEL_AUTH_ERROR"
    return "MODEL_ERROR"


def model_error(
    exc: BaseException, *, api_key: str = "", partial: TurnResult | None = None
) -> ModelError:
    """The ``ModelError`` for an SDK exception: a stable code, a message a user can
    act on (the API's own explanation when it gave one), and details for support.
    ``api_key`` is scrubbed from every string, should an error ever echo it."""
    code = _code(exc)
    details: dict[str, Any] = {}
    reason = ""
    if isinstance(exc, anthropic.APIStatusError):
        reason = exc.api_message or ""
        # 200 means the stream had started: the error came as an `event: error` frame.
        details = {"status": exc.status_code, "type": exc.type, "requestId": exc.request_id}
        if exc.status_code == 200:
            details["midStream"] = True
    elif isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        reason = "the request timed out"
    elif isinstance(exc, anthropic.APIConnectionError):
        cause = exc.__cause__
        reason = f"connection failed ({type(cause).__name__})" if cause else "connection failed"
    elif isinstance(exc, httpx2.TransportError):
        reason = f"the connection broke during the reply ({type(exc).__name__})"
    elif isinstance(exc, ValueError):
        reason = "the reply could not be parsed"
    elif isinstance(exc, anthropic.CredentialsError):
        reason = "no usable credentials are configured (set ANTHROPIC_API_KEY)"
    else:
        reason = type(exc).__name__
    message = f"{_SUMMARY[code]} Details: {reason}" if reason else _SUMMARY[code]
    if api_key:
        message = message.replace(api_key, "[redacted]")
        details = {
            k: v.replace(api_key, "[redacted]") if isinstance(v, str) else v
            for k, v in details.items()
        }
    return ModelError(code, message, details=details, partial=partial)
