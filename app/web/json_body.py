"""A JSON request body as a typed route parameter: ``body: JsonBody[Model]``.

The body is read by ``read_json`` (bounded, ``application/json`` only, strict UTF-8, the one error
model), not by FastAPI: FastAPI's own reading would answer malformed JSON with 422, take any media
type, and read past our bound. The dependency carries its model, so that the OpenAPI document can
still describe the body (``app.web.app_factory``).

Declare the body after the route's guards and session: dependencies run in the order declared, so
a caller without a session is told 401 before anything about the body, as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Generic, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from app.kit.errors import UnsupportedMediaType
from app.web.context import Context
from app.web.request_body import media_type, read_json

ModelT = TypeVar("ModelT", bound=BaseModel)


class JsonBodyReader(Generic[ModelT]):
    """The dependency behind ``JsonBody[model]``. With ``streamed_media_type``, a body of that type
    is left unread for the route to stream itself (the reader gives None), and any other type that
    is not JSON is refused with the error's own message, which names both."""

    def __init__(self, model: type[ModelT], *, streamed_media_type: str | None = None) -> None:
        self.model = model
        self.streamed_media_type = streamed_media_type

    async def __call__(self, request: Request, context: Context) -> ModelT | None:
        if self.streamed_media_type is not None:
            kind = media_type(request)
            if kind == self.streamed_media_type:
                return None
            if kind != "application/json":
                raise UnsupportedMediaType
        return await read_json(request, self.model, context.settings)


if TYPE_CHECKING:
    # To the type checker ``JsonBody[Model]`` is simply ``Model``.
    JsonBody = Annotated[ModelT, "a JSON request body"]
else:

    class JsonBody:
        def __class_getitem__(cls, model: type[BaseModel]) -> object:
            return Annotated[model, Depends(JsonBodyReader(model))]
