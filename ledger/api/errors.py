"""Every error answer is JSON. Handle routes answer in the Handle.Net shape with a responseCode."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger import timefmt
from ledger.chaindb import NotHeld

log = logging.getLogger("ledger.api")

HANDLE_PREFIX = "/api/handles"


class ApiError(Exception):
    """An error with an HTTP status and a stable machine-readable reason."""

    def __init__(self, status: int, error: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.extra = extra


def time_param_ms(text: str | None, name: str) -> int:
    """A time query parameter (ms or ISO 8601) in ms since the epoch, now when absent; 400 when malformed."""
    if text is None:
        return time.time_ns() // 1_000_000
    try:
        return timefmt.parse_time_ms(text)
    except ValueError as exc:
        raise ApiError(400, "malformed", f"{name} must be milliseconds or ISO 8601, not {text!r}") from exc


def error_response(status: int, error: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, **extra}, status_code=status)


def _handle_error(request: Request, status: int, code: int, message: str) -> JSONResponse:
    handle = request.url.path[len(HANDLE_PREFIX) + 1 :]
    return JSONResponse({"responseCode": code, "handle": handle, "message": message}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        if request.url.path.startswith(HANDLE_PREFIX):
            return _handle_error(request, 400, 2, message)
        return error_response(400, "malformed", message)

    @app.exception_handler(NotHeld)
    async def not_held(request: Request, exc: NotHeld) -> JSONResponse:
        # A state-synced node holds nothing below its base: say which height is the oldest it can answer.
        if request.url.path.startswith(HANDLE_PREFIX):
            return _handle_error(request, 410, 2, str(exc))
        return error_response(410, "not_held", str(exc), oldest=exc.oldest)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if request.url.path.startswith(HANDLE_PREFIX):
            code = 100 if exc.status_code == 404 else 2
            response = _handle_error(request, exc.status_code, code, str(exc.detail))
        else:
            response = error_response(exc.status_code, "http_error", str(exc.detail))
        response.headers.update(exc.headers or {})  # e.g. `Allow` with a 405
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        if request.url.path.startswith(HANDLE_PREFIX):
            return _handle_error(request, 500, 2, "internal server error")
        return error_response(500, "internal", "internal server error")
