"""Errors on staff *pages* are pages: a browser without a session goes to the login page,
and a refusal is explained in HTML, never as raw JSON. The API keeps its JSON errors."""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.kit.errors import AppError, Unauthenticated
from app.web.pages import render_staff_page

HEADINGS = {
    403: "Not allowed",
    404: "Not found",
    413: "Too large",
    422: "Please check the form",
    503: "Busy: try again in a moment",
}
PAGE_ERRORS: tuple[type[Exception], ...] = (AppError, StarletteHTTPException, RequestValidationError)


def _is_page(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/static/", "/healthz"))


def install_staff_page_errors(app: FastAPI) -> None:
    """Wrap the JSON error handlers already installed so that page requests get pages."""
    json_handlers = {exc_class: app.exception_handlers[exc_class] for exc_class in PAGE_ERRORS}

    async def page_or_json(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            exc_class = next(cls for cls in PAGE_ERRORS if isinstance(exc, cls))
            response = json_handlers[exc_class](request, exc)
            return await response if inspect.isawaitable(response) else response
        if isinstance(exc, Unauthenticated):
            return RedirectResponse("/login", status_code=303)
        if isinstance(exc, AppError):
            status, message = exc.status, exc.public_message
        elif isinstance(exc, StarletteHTTPException):
            status, message = exc.status_code, "This page does not exist."
        else:
            status, message = 422, "The request was not understood."
        return render_staff_page(
            request,
            "staff/error.html",
            status_code=status,
            status=status,
            heading=HEADINGS.get(status, "Something went wrong"),
            message=message,
        )

    for exc_class in PAGE_ERRORS:
        app.add_exception_handler(exc_class, page_or_json)
