"""One error model: `AppError(code, public_message, status)`.

Rendered as ``{"error": code, "detail": ...}`` for the API. Anything else that
escapes a handler becomes a generic 500 carrying a random request id; the
exception text never reaches the client.
"""

from __future__ import annotations

import errno
import http
import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from app.kit.logs import current_request_id
from app.kit.security_headers import SECURITY_HEADERS

logger = logging.getLogger("daylight")


def N_(message: str) -> str:  # noqa: N802 - the gettext convention extraction looks for
    """Mark a string for translation (it is translated where a page shows it)."""
    return message


class AppError(Exception):
    status = 400
    code = "bad_request"
    public_message = N_("The request could not be processed.")

    def __init__(self, public_message: str | None = None, *, code: str | None = None) -> None:
        super().__init__(public_message or self.public_message)
        if public_message is not None:
            self.public_message = public_message
        if code is not None:
            self.code = code


class NotFound(AppError):
    status = 404
    code = "not_found"
    public_message = "Not found."


class Unauthenticated(AppError):
    status = 401
    code = "unauthenticated"
    public_message = "Authentication required."


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    public_message = "Not allowed."


class Conflict(AppError):
    status = 409
    code = "conflict"
    public_message = "The request conflicts with the current state."


class IntegrityFailure(AppError):
    """Stored ciphertext failed authentication: the database or data dir was altered."""

    status = 500
    code = "integrity_failure"
    public_message = "A stored record failed its integrity check and was not opened."


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    public_message = N_("The request is too large.")


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    public_message = "Send application/json or multipart/form-data."


class ServiceUnavailable(AppError):
    """The database does not answer, or every connection is busy: try again shortly."""

    status = 503
    code = "unavailable"
    public_message = N_("The service cannot take this request right now. Please try again in a minute.")


class InsufficientStorage(AppError):
    """The disk (or quota) holding the database or the files is full: nothing was stored."""

    status = 507
    code = "insufficient_storage"
    public_message = N_("The service cannot store anything right now. Please try again later.")


# SQLITE_FULL; PostgreSQL's disk_full (53100) and the other class-53 resource errors.
_SQLITE_FULL = 13
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def storage_full(exc: BaseException) -> bool:
    """Whether an error says the disk or a quota is full (the data dir or the database's)."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return True
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    if isinstance(original, sqlite3.Error):
        return getattr(original, "sqlite_errorcode", None) == _SQLITE_FULL
    sqlstate = getattr(original, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate in {"53100", "53200", "53400"}


def database_failure(exc: SQLAlchemyError) -> AppError | None:
    """What a database error means to a client, when it is about availability or space, not a
    bug: 507 for a full disk; 503 for a database that is unreachable, locked, shutting down,
    or whose pool is exhausted. None for anything else (a programming error stays a 500)."""
    if storage_full(exc):
        return InsufficientStorage()
    if isinstance(exc, PoolTimeout):
        return ServiceUnavailable()
    if isinstance(exc, DBAPIError) and (
        exc.connection_invalidated or (exc.orig is not None and _unavailable(exc.orig))
    ):
        return ServiceUnavailable()
    return None


def _unavailable(original: BaseException) -> bool:
    if isinstance(original, sqlite3.OperationalError):
        # SQLITE_BUSY / SQLITE_LOCKED past busy_timeout; SQLITE_IOERR, SQLITE_CANTOPEN.
        return getattr(original, "sqlite_errorcode", 0) & 0xFF in {5, 6, 10, 14}
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str):
        # 08: connection exceptions; 57P: operator intervention (shutdown, crash recovery);
        # 53300: too many connections; 57014: statement timeout/cancel; 40001/40P01:
        # serialization failure and deadlock, where trying again is the answer.
        # 55P03: lock_timeout passed (a lock held by maintenance).
        return sqlstate.startswith(("08", "57P")) or sqlstate in {"53300", "57014", "40001", "40P01", "55P03"}
    # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all.
    return type(original).__name__ == "OperationalError"


class InvalidInput(AppError):
    status = 422
    code = "invalid_input"
    public_message = N_("The request is invalid.")

    def __init__(
        self, public_message: str | None = None, *, fields: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(public_message)
        self.fields = fields or []


def error_body(code: str, detail: Any) -> dict[str, Any]:
    return {"error": code, "detail": detail}


class FieldProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    message: str


class InvalidInputDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str
    fields: list[FieldProblem]


class ErrorBody(BaseModel):
    """The one error model as the API sends it (``error_body``), declared for the OpenAPI document:
    ``detail`` is a message, or for invalid input the message and the fields at fault."""

    model_config = ConfigDict(extra="forbid")
    error: str
    detail: str | InvalidInputDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` declaring that these statuses answer in the one error model."""
    return {
        status: {"model": ErrorBody, "description": http.HTTPStatus(status).phrase} for status in statuses
    }


def safe_error_fields(errors: Sequence[Any]) -> list[dict[str, str]]:
    """Validation errors as location and message only.

    Pydantic's "input" and "ctx" would echo the submitted value (possibly a
    narrative) back to the client, into proxies and into logs.
    """
    return [
        {
            "field": ".".join(str(part) for part in err.get("loc", ()) if part != "body"),
            "message": str(err.get("msg", "invalid")),
        }
        for err in errors
    ]


def app_error_response(exc: AppError) -> JSONResponse:
    """An AppError in the one error model. (Every 503 gets its Retry-After from
    app.web.admission, whichever handler wrote it.)"""
    detail: Any = exc.public_message
    if isinstance(exc, InvalidInput) and exc.fields:
        detail = {"message": exc.public_message, "fields": exc.fields}
    return JSONResponse(error_body(exc.code, detail), status_code=exc.status)


def install_error_handlers(app: FastAPI) -> None:
    async def app_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)  # noqa: S101 - registered for AppError only
        return app_error_response(exc)

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SQLAlchemyError)  # noqa: S101
        meaning = database_failure(exc)
        if meaning is None:
            return await unexpected_error(request, exc)
        logger.warning("database unavailable or full (answered %s)", meaning.status)
        return app_error_response(meaning)

    async def os_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, OSError)  # noqa: S101
        if not storage_full(exc):
            return await unexpected_error(request, exc)
        logger.warning("storage full")
        return app_error_response(InsufficientStorage())

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # noqa: S101
        body = error_body(
            "invalid_input",
            {"message": N_("The request is invalid."), "fields": safe_error_fields(exc.errors())},
        )
        return JSONResponse(body, status_code=422)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # noqa: S101
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else "Request refused."
        return JSONResponse(
            error_body(code, message), status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    async def client_gone(_request: Request, _exc: Exception) -> Response:
        # The client hung up mid-body: nobody to answer, nothing to log (a log
        # line would timestamp an aborted submission).
        return Response(status_code=400)

    async def unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
        request_id = current_request_id()
        # This handler runs outside the request-id middleware: the id goes on the line explicitly.
        logger.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
        # Rendered by Starlette's outermost middleware, outside our header
        # middleware: the security headers are added here instead.
        return JSONResponse(
            error_body("internal_error", f"Internal error (request {request_id})."),
            status_code=500,
            headers={name.decode(): value.decode() for name, value in SECURITY_HEADERS},
        )

    app.add_exception_handler(AppError, app_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(SQLAlchemyError, database_error)
    app.add_exception_handler(OSError, os_error)
    app.add_exception_handler(Exception, unexpected_error)
