"""The one place that turns errors into HTTP: the contract's JSON shape, always."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend.errors import (
    ApiError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationError,
)

log = logging.getLogger("agent_tui.api")


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers or None)


def _validation_details(exc: RequestValidationError) -> dict[str, Any]:
    problems = []
    for item in exc.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
        problems.append({"field": location or "body", "message": item.get("msg", "invalid")})
    return {"problems": problems}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if isinstance(exc, ServiceUnavailable):
        log.warning("service unavailable: %s", exc.message)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    if any(p["message"].startswith("JSON decode error") for p in details["problems"]):
        return error_response(ValidationError("Malformed JSON body", details=details))
    return error_response(ValidationError("Invalid request", details=details))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error: ApiError
    if exc.status_code == 404:
        error = NotFound("No such route")
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    elif exc.status_code == 413:
        error = PayloadTooLarge()
    elif exc.status_code == 400:
        error = ValidationError(str(exc.detail) if exc.detail else None)
    elif exc.status_code < 500:
        error = ApiError(str(exc.detail))
        error.status, error.code = exc.status_code, f"HTTP_{exc.status_code}"
    else:
        error = InternalError()
    response = error_response(error)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    # The log gets the traceback (with the request id); the client gets nothing internal.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(InternalError())


def install_error_handlers(app: FastAPI) -> None:
    """Map every kind of error to the contract's body."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)
