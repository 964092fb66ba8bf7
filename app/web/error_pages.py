"""Intake errors as pages: a browser that asked for HTML and met a refusal gets a page in its
language, with the quick exit and the way back to the form, never a raw English JSON body.

A submitter who opens `/report/step` directly, sends files larger than allowed, or arrives while
the service is shedding load (503 from admission control, before any route runs) would otherwise
be shown `{"error": ...}` in English, with no way out but the browser's own buttons, which on
`no-store` pages end in ERR_CACHE_MISS. API clients keep the JSON error model: the page is given
only when the request's Accept names text/html and not JSON, as a browser's navigation does.

It is pure ASGI and wraps the whole intake app (`DocumentedApp.outermost`), so it also catches
the answers that admission control writes itself (408, 503) and the 413 that the outer body-size
limit writes in plain text outside every other middleware. The status and every other header
(Retry-After, Allow) are kept, and the page carries the security headers whoever wrote the
refusal; only the body and its type change.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.kit.errors import N_
from app.kit.security_headers import SECURITY_HEADERS
from app.web.pages import render_language_page

# What each refusal tells the submitter: a heading and what happened (nothing was stored).
ERROR_PAGE_TEXTS: dict[int, tuple[str, str]] = {
    404: (
        N_("This page does not exist"),
        N_("The address may be mistyped or out of date. The report form starts on its first page."),
    ),
    405: (
        N_("This page opens only from the form"),
        N_(
            "It receives the answers of the form's own buttons. "
            "Nothing was sent. Start again from the first page."
        ),
    ),
    408: (
        N_("The connection was too slow"),
        N_(
            "Not everything arrived in time, so nothing was stored. "
            "Try again, with smaller or fewer files if you added any."
        ),
    ),
    413: (
        N_("Too much was sent at once"),
        N_(
            "The answers or files are larger than this site accepts, so nothing was stored. "
            "Send smaller files, or fewer at a time."
        ),
    ),
    415: (
        N_("What was sent could not be read"),
        N_(
            "It did not arrive as a form this site reads, so nothing was stored. "
            "Start again from the first page."
        ),
    ),
    422: (
        N_("Something sent could not be accepted"),
        N_("Nothing was stored. Start again from the first page."),
    ),
    503: (
        N_("The service is busy"),
        N_("Nothing was stored. Wait a minute, then reload this page to send it again."),
    ),
    507: (
        N_("The service cannot store anything right now"),
        N_("Nothing was stored. Please try again later."),
    ),
}


# The error model, and the plain text of the body-size limit (Starlette's own 413).
REFUSAL_TYPES = ("application/json", "text/plain")


def wants_page(headers: Headers) -> bool:
    """A browser's navigation asks for text/html; an API client asks for JSON or anything."""
    accept = headers.get("accept", "").lower()
    return "text/html" in accept and "application/json" not in accept


def language_code(scope: Scope) -> str:
    query: bytes = scope.get("query_string", b"")
    return parse_qs(query.decode("latin-1")).get("lang", [""])[0]


class IntakeErrorPages:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not wants_page(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        held: Message | None = None

        async def send_page_for_errors(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"])
                if message["status"] in ERROR_PAGE_TEXTS and headers.get("content-type", "").startswith(
                    REFUSAL_TYPES
                ):
                    held = message  # the JSON body that follows is replaced
                    return
            elif message["type"] == "http.response.body" and held is not None:
                if message.get("more_body", False):
                    return
                body = render_error_page(language_code(scope), held["status"]).encode()
                headers = MutableHeaders(raw=list(held["headers"]))
                headers["content-type"] = "text/html; charset=utf-8"
                headers["content-length"] = str(len(body))
                for name, value in SECURITY_HEADERS:
                    headers[name.decode()] = value.decode()
                await send({"type": "http.response.start", "status": held["status"], "headers": headers.raw})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_page_for_errors)


def render_error_page(language: str, status: int) -> str:
    heading, explanation = ERROR_PAGE_TEXTS[status]
    return render_language_page(
        language, "intake/error.html", heading=heading, explanation=explanation, status=status
    )
