"""The backend's one error hierarchy.

Every failure a client can see is an ``ApiError`` (or is turned into one in
``backend/api/errors.py``, the only place that maps errors to HTTP). Lower layers
(store, sandbox, rate limiter) raise the specific subclasses below.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error with the contract's shape: HTTP status, code, message, details."""

    status: int = 500
    code: str = "INTERNAL_ERROR"
    default_message: str = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        """The JSON body of the contract: ``{"error": {code, message, details}}``."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ValidationError(ApiError):
    status, code, default_message = 400, "VALIDATION_ERROR", "Invalid request"


class InvalidApiKey(ApiError):
    status, code, default_message = 401, "INVALID_API_KEY", "Missing or invalid API key"


class Forbidden(ApiError):
    status, code, default_message = 403, "FORBIDDEN", "This key lacks the scope for this call"


class NotFound(ApiError):
    status, code, default_message = 404, "NOT_FOUND", "Not found"


class SessionNotFound(NotFound):
    code, default_message = "SESSION_NOT_FOUND", "Session not found"


class FileNotFound(NotFound):
    code, default_message = "FILE_NOT_FOUND", "File not found"


class KeyNotFound(NotFound):
    code, default_message = "KEY_NOT_FOUND", "API key not found"


class MethodNotAllowed(ApiError):
    status, code, default_message = 405, "METHOD_NOT_ALLOWED", "Method not allowed"


class SessionBusy(ApiError):
    status, code, default_message = 409, "SESSION_BUSY", "The session is busy"


class SessionTerminated(ApiError):
    status, code, default_message = 409, "SESSION_TERMINATED", "The session was deleted"


class SessionFailed(ApiError):
    """The session is in status ``error`` (its sandbox could not be created, or was
    lost with no snapshot to restore): its history stays readable, but it can run
    nothing more. ``details.error`` holds the session's error."""

    status, code, default_message = 409, "SESSION_FAILED", "The session failed"


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "PAYLOAD_TOO_LARGE", "Request body too large"


class RateLimitExceeded(ApiError):
    status, code, default_message = 429, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded"


class SessionLimitExceeded(ApiError):
    status, code, default_message = 429, "SESSION_LIMIT_EXCEEDED", "Too many active sessions"


class ModelFailed(ApiError):
    """The model API failed during a request that calls it directly (on-demand
    compaction); ``code`` is the model error's (``MODEL_OVERLOADED``...)."""

    status, code, default_message = 502, "MODEL_ERROR", "The model API failed"

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)
        self.code = code


class InternalError(ApiError):
    status, code, default_message = 500, "INTERNAL_ERROR", "Internal server error"


class SandboxError(ApiError):
    """The sandbox provider failed (create, resume, exec, files)."""

    status, code, default_message = 502, "SANDBOX_ERROR", "The sandbox failed"


class SandboxPathError(ValidationError):
    """A path escapes the workspace (``..``, absolute, or a symlink that leads out)."""

    default_message = "Path is outside the workspace"


class ServiceUnavailable(ApiError):
    """A dependency (the database, the rate limiter when fail-closed) is unreachable."""

    status, code, default_message = 503, "SERVICE_UNAVAILABLE", "Service temporarily unavailable"

    def __init__(self, message: str | None = None, *, retry_after: int = 5, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.setdefault("Retry-After", str(retry_after))


class StoreUnavailable(ServiceUnavailable):
    """The database cannot be reached; raised by ``Store`` implementations."""

    default_message = "The database is unreachable"


class RateLimiterUnavailable(Exception):
    """The rate limiter's store is down or slow. Not an ``ApiError``: the caller
    decides between fail-open and fail-closed."""
