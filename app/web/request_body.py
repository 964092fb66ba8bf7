"""Reading request bodies within bounds, before anything is parsed or stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.config import Settings
from app.errors import AppError, InvalidInput, PayloadTooLarge, UnsupportedMediaType, safe_error_fields
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


async def bounded_stream(request: Request, limit: int, *, idle_timeout: float) -> AsyncIterator[bytes]:
    """The body in chunks; 413 as soon as it is known to exceed ``limit`` bytes,
    408 when the client goes silent for ``idle_timeout`` seconds."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge
    received = 0
    chunks = request.stream().__aiter__()
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
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
    return b"".join([chunk async for chunk in bounded_stream(
        request, settings.max_json_bytes, idle_timeout=settings.request_idle_timeout_seconds)])


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
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise MalformedBody("The body is not valid JSON.") from None
    return validate_model(model, data)
