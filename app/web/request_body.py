"""Reading request bodies within bounds, before anything is parsed or stored."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.kit.config import Settings
from app.kit.errors import AppError, InvalidInput, PayloadTooLarge, UnsupportedMediaType, safe_error_fields
from app.web.i18n import N_

ModelT = TypeVar("ModelT", bound=BaseModel)


class MalformedBody(AppError):
    status = 400
    code = "malformed_body"
    public_message = N_("The request body could not be read.")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise MalformedBody from exc


class RequestTimeout(AppError):
    status = 408
    code = "request_timeout"
    public_message = N_("The request body stopped arriving.")


@dataclass(frozen=True, slots=True)
class TransferFloor:
    """What a long body must keep up: an overall deadline, and after a grace period an average
    rate. The idle timeout alone restarts on every chunk, so a client sending three bytes a
    second would hold an upload slot for ever; these end it."""

    deadline_seconds: float
    min_bytes_per_second: int = 0
    grace_seconds: float = 0

    @classmethod
    def for_uploads(cls, settings: Settings) -> TransferFloor:
        return cls(
            settings.upload_deadline_seconds,
            settings.upload_min_bytes_per_second,
            settings.upload_rate_grace_seconds,
        )

    def seconds_left(self, elapsed: float, received: int) -> float:
        """How long the client may still take for its next bytes before it breaks the floor."""
        left = self.deadline_seconds - elapsed
        if self.min_bytes_per_second > 0:
            # The rate is checked from the end of the grace period: by then the client must have
            # sent min_bytes_per_second for every second so far.
            due_by = max(self.grace_seconds, received / self.min_bytes_per_second)
            left = min(left, due_by - elapsed)
        return left


async def bounded_stream(
    request: Request, limit: int, *, idle_timeout: float, floor: TransferFloor | None = None
) -> AsyncIterator[bytes]:
    """The body in chunks; 413 as soon as it is known to exceed ``limit`` bytes,
    408 when the client goes silent for ``idle_timeout`` seconds, or falls below ``floor``."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge
    received = 0
    chunks = request.stream().__aiter__()
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        timeout = idle_timeout
        if floor is not None:
            timeout = min(timeout, floor.seconds_left(loop.time() - started, received))
            if timeout <= 0:
                raise RequestTimeout
        try:
            async with asyncio.timeout(timeout):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RequestTimeout from None
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge
        yield chunk


async def read_bounded_body(request: Request, settings: Settings) -> bytes:
    """A small body (JSON, a urlencoded form), whole, within ``max_json_bytes``."""
    return b"".join(
        [
            chunk
            async for chunk in bounded_stream(
                request, settings.max_json_bytes, idle_timeout=settings.request_idle_timeout_seconds
            )
        ]
    )


def validate_model(model: type[ModelT], data: object) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(fields=safe_error_fields(exc.errors())) from None


async def read_json(request: Request, model: type[ModelT], settings: Settings) -> ModelT:
    # Requiring application/json is also the API's CSRF defence: a cross-site
    # form cannot send it, and a cross-site script needs a CORS preflight we never grant.
    if media_type(request) != "application/json":
        raise UnsupportedMediaType("Send application/json.")
    body = await read_bounded_body(request, settings)
    try:
        # Decoded strictly first: json.loads on bytes lets UTF-8-encoded surrogates (ED A0 80)
        # through as lone surrogates, which then fail deep in a transaction.
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedBody("The body is not valid UTF-8.") from None
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise MalformedBody("The body is not valid JSON.") from None
    if _SURROGATE_ESCAPE.search(body) and not _encodable(data):
        # JSON may spell a lone UTF-16 surrogate ("\ud800"), which is no character: it cannot
        # be encoded as UTF-8 for the database or for sealing, and would fail deep in a
        # transaction instead of here.
        raise MalformedBody("The body holds text that is not valid Unicode.")
    return validate_model(model, data)


# A \uD800-\uDFFF escape: only bodies holding one need the full check (pairs are fine).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")


def _encodable(data: object) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
