"""The common shape of both ASGI apps."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from app.kit.errors import install_error_handlers
from app.kit.logs import RequestIdMiddleware
from app.kit.security_headers import SecurityHeadersMiddleware
from app.web.admission import AdmissionMiddleware
from app.web.context import AppContext

STATIC_DIR = Path(__file__).resolve().parent / "static"


def quiet_third_party_loggers() -> None:
    # python_multipart logs parse warnings that quote bytes of the request
    # body; nothing a submitter sends may reach a log.
    logging.getLogger("python_multipart").setLevel(logging.CRITICAL + 1)


def build_app(context: AppContext, *, title: str) -> FastAPI:
    quiet_third_party_loggers()
    app = FastAPI(
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
    install_error_handlers(app)
    # Innermost of the three: its own 503/408 answers still get the security headers and a
    # request id.
    app.add_middleware(AdmissionMiddleware, settings=context.settings)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
