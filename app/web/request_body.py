"""Reading request bodies within bounds, before anything is parsed or stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from app.errors import AppError, InvalidInput, PayloadTooLarge, UnsupportedMediaType, safe_error_fields

ModelT = TypeVar("ModelT", bound=BaseModel)


class MalformedBody(AppError):
    status = 400
    code = "malformed_body"
    public_message = "The request body could not be read."


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


async def bounded_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body in chunks; 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise PayloadTooLarge
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge
        yield chunk


def validate_model(model: type[ModelT], data: object) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(fields=safe_error_fields(exc.errors())) from None


async def read_json(request: Request, model: type[ModelT], limit: int) -> ModelT:
    # Requiring application/json is also the API's CSRF defence: a cross-site
    # form cannot send it, and a cross-site script needs a CORS preflight we never grant.
    if media_type(request) != "application/json":
        raise UnsupportedMediaType("Send application/json.")
    body = b"".join([chunk async for chunk in bounded_stream(request, limit)])
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedBody("The body is not valid JSON.") from None
    return validate_model(model, data)
