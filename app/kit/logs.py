"""Structured application logs: one JSON object per line, with the request's id.

What a log line may hold is decided here, not at each call site: the time (to
the second, UTC), the level, the logger, the message as written in the code,
the request id, and for an exception its type and the code locations of its
traceback. Never the exception's message or the call's arguments: those are
where a narrative, a receipt or a token would ride into a log (a
`ValueError("invalid literal ...: 'the submitter's words'")`). No IP address or
User-Agent is ever logged: there is no access log, and nothing here reads a
request's headers.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import secrets
import traceback
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("daylight_request_id", default=None)
REQUEST_ID_HEADER = b"x-request-id"


def current_request_id() -> str:
    """The id of the request being served (a fresh one outside any request)."""
    return _request_id.get() or secrets.token_hex(8)


class RequestIdMiddleware:
    """A random id per request, for matching a client's error page to the log line; the response
    carries it. Random, so it says nothing about the request or its order."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        token = _request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request_id.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            # The message as written in the code: its %-arguments are not interpolated, since an
            # argument could be anything a caller had at hand.
            "message": str(record.msg),
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, exc_traceback = record.exc_info
            entry["exception"] = exc_type.__name__
            entry["traceback"] = [
                f"{frame.filename}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(exc_traceback)
            ]
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.WARNING) -> None:
    """Every logger (ours, uvicorn's, the libraries') through one JSON handler on stderr."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # Uvicorn's access log would name client addresses; it is also switched off in `serve`.
    logging.getLogger("uvicorn.access").disabled = True
