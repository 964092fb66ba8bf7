"""The common shape of both ASGI apps."""

from __future__ import annotations

import http
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from app.kit.errors import ErrorBody, install_error_handlers
from app.kit.logs import RequestIdMiddleware
from app.kit.security_headers import SecurityHeadersMiddleware
from app.web.admission import AdmissionMiddleware
from app.web.context import AppContext
from app.web.cross_origin import CrossOriginMiddleware
from app.web.json_body import JsonBodyReader

STATIC_DIR = Path(__file__).resolve().parent / "static"


def quiet_third_party_loggers() -> None:
    # python_multipart logs parse warnings that quote bytes of the request
    # body; nothing a submitter sends may reach a log.
    logging.getLogger("python_multipart").setLevel(logging.CRITICAL + 1)


SCHEMA_REF = "#/components/schemas/{model}"
# What reading a JSON body can answer (app.web.request_body): malformed, too slow, too large, not
# JSON, invalid.
BODY_ERRORS = (400, 408, 413, 415, 422)


class DocumentedApp(FastAPI):
    """FastAPI whose OpenAPI document tells the truth about what we read and send: the JSON bodies
    our own reader takes (FastAPI sees none), and the one error model for invalid input instead of
    FastAPI's ``HTTPValidationError``, which is never sent. Not served (``openapi_url=None``); the
    contract tests read it."""

    # Wrapped around everything FastAPI builds, its own body-size limit included (whose 413 is
    # otherwise written outside every middleware added with add_middleware).
    outermost: list[Callable[[ASGIApp], ASGIApp]]

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        for wrap in reversed(getattr(self, "outermost", [])):
            stack = wrap(stack)
        return stack

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = super().openapi()
            models = _document_json_bodies(self, document)
            _add_schemas(document, [ErrorBody, *models])
            _replace_validation_error(document)
            self.openapi_schema = document
        return self.openapi_schema


def _json_body_readers(dependant: Dependant) -> Iterator[JsonBodyReader[Any]]:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, JsonBodyReader):
            yield dependency.call
        yield from _json_body_readers(dependency)


def _error_response(status: int) -> dict[str, Any]:
    ref = SCHEMA_REF.format(model=ErrorBody.__name__)
    return {
        "description": http.HTTPStatus(status).phrase,
        "content": {"application/json": {"schema": {"$ref": ref}}},
    }


def _document_json_bodies(app: FastAPI, document: dict[str, Any]) -> list[type[BaseModel]]:
    models: list[type[BaseModel]] = []
    for route in iter_route_contexts(app.routes):
        readers = list(_json_body_readers(route.dependant)) if hasattr(route, "dependant") else []
        if not readers or not getattr(route, "include_in_schema", False):
            continue
        [reader] = readers  # a request has one body
        models.append(reader.model)
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            ref = SCHEMA_REF.format(model=reader.model.__name__)
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": ref}}},
            }
            for status in BODY_ERRORS:
                operation["responses"][str(status)] = _error_response(status)
    return models


def _add_schemas(document: dict[str, Any], models: list[type[BaseModel]]) -> None:
    """The models' validation schemas (what a client must send) as components, beside FastAPI's."""
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=SCHEMA_REF)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        if schemas.setdefault(name, schema) != schema:
            raise RuntimeError(f"Two different schemas are named {name} in the OpenAPI document.")


def _replace_validation_error(document: dict[str, Any]) -> None:
    for operations in document["paths"].values():
        for operation in operations.values():
            if "422" in operation.get("responses", {}):
                operation["responses"]["422"] = _error_response(422)
    schemas = document["components"]["schemas"]
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)


def build_app(context: AppContext, *, title: str, refuse_cross_origin: bool = False) -> DocumentedApp:
    """``refuse_cross_origin``: refuse every unsafe request a browser sends from another origin
    (``app.web.cross_origin``; the staff app)."""
    quiet_third_party_loggers()
    app = DocumentedApp(
        title=title,
        # No interactive docs or schema on either app: the intake app must not
        # describe the staff API, and neither needs to advertise itself.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI's OpenTelemetry hooks would record client addresses in spans
        # (and log validation failures with their input) if an operator's
        # environment configured an exporter.
        telemetry={
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
        # An outer bound on any body; each route applies its own, tighter one.
        max_body_size=context.settings.max_request_bytes,
    )
    app.state.context = context
    # Around everything, so that even the body-size limit's 413 and the 500 page carry them.
    app.outermost = [SecurityHeadersMiddleware]
    install_error_handlers(app)
    # Innermost: its own 503/408 answers still get the security headers and a request id.
    app.add_middleware(AdmissionMiddleware, settings=context.settings)
    if refuse_cross_origin:
        # Outside admission (a forged post takes no slot and has no body read), inside the
        # headers and the request id (its 403 gets both).
        app.add_middleware(CrossOriginMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
