"""HTML form posts: small urlencoded bodies, from this site only, with a CSRF token when signed in."""

from __future__ import annotations

import hmac
import uuid
from urllib.parse import parse_qs

from fastapi import Request

from app.kit.config import Settings
from app.kit.errors import Forbidden, InvalidInput, UnsupportedMediaType
from app.web.cross_origin import from_elsewhere
from app.web.i18n import N_
from app.web.request_body import MalformedBody, media_type, read_bounded_body


class CrossSiteForm(Forbidden):
    code = "cross_site"
    public_message = N_("This form can only be sent from this site.")


class StaleForm(Forbidden):
    code = "csrf"
    public_message = N_("This form has expired. Go back, reload the page and try again.")


def posted_from_elsewhere(request: Request) -> bool:
    """True when the browser says the form came from another origin (``from_elsewhere``, the
    rules the staff app applies to every post in ``app.web.cross_origin``).

    Modern browsers send Sec-Fetch-Site, and anything but ``same-origin`` or ``none`` is
    refused (``same-site`` too: a sibling host is another origin). Older ones send an Origin,
    which must name this host; ``Origin: null`` is refused, since a sandboxed iframe or a
    ``data:`` URL sends it to hide where a post came from. (Our ``Referrer-Policy:
    no-referrer`` makes some browsers send ``Origin: null`` on a post from our own page; those
    browsers send ``Sec-Fetch-Site: same-origin`` as well, which is read first.) A client that
    sends neither header is no browser and is let through.
    """
    return from_elsewhere(
        request.headers.get("sec-fetch-site"), request.headers.get("origin"), request.headers.get("host")
    )


async def read_form_values(request: Request, settings: Settings) -> dict[str, list[str]]:
    """Every posted value of every field (checkbox groups post several). Refuses other sites' posts."""
    if posted_from_elsewhere(request):
        raise CrossSiteForm
    if media_type(request) != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("Send the form as application/x-www-form-urlencoded.")
    body = await read_bounded_body(request, settings)
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise MalformedBody(N_("The form data could not be read.")) from None


async def read_form(request: Request, settings: Settings, *, csrf_token: str | None = None) -> dict[str, str]:
    """The posted fields (first value of each). Refuses other sites' posts and, when
    ``csrf_token`` is given, a form that does not carry it."""
    values = await read_form_lists(request, settings, csrf_token=csrf_token)
    return {name: posted[0] for name, posted in values.items()}


async def read_form_lists(
    request: Request, settings: Settings, *, csrf_token: str | None = None
) -> dict[str, list[str]]:
    """Every posted value of every field (a column of ticked boxes), refused as `read_form` refuses."""
    values = await read_form_values(request, settings)
    if csrf_token is not None and not hmac.compare_digest(
        (values.get("csrf_token") or [""])[0].encode(), csrf_token.encode()
    ):
        raise StaleForm
    return values


def uuid_field(value: str | None, what: str) -> uuid.UUID | None:
    """An optional id chosen in a form (a select's value): None when empty, a 422 naming the
    field when it is not an id, never a 500."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(f"The {what} is not valid.") from None
