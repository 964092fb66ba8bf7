"""The staff app refuses every state-changing request a browser sends from another origin.

Threat: cross-site request forgery against a signed-in staff member. The JSON API's old
defence ("send ``application/json``", which no HTML form can) held only where a route reads a
body: a route that reads none (claim, release, logout, a checkpoint...) ran on a plain
cross-site form post. ``SameSite=Strict`` on the session cookie is not enough on its own:

- a *same-site* attacker (a sibling subdomain, or the intake app on the same host under
  another port) is not cross-site, so the browser sends a Strict cookie with its post;
- a page can make the browser send ``Origin: null`` (a sandboxed iframe, a ``data:`` URL, some
  redirects), which hides where the post came from.

So, before any route, any body read and any admission slot, every unsafe method (anything but
GET, HEAD and OPTIONS) is refused with 403 in the one error model when the browser says it
came from elsewhere (``from_elsewhere``):

1. ``Sec-Fetch-Site`` present and neither ``same-origin`` nor ``none`` (``none``: the user
   typed, bookmarked or reloaded). ``same-site`` is refused: same site, other origin.
2. No ``Sec-Fetch-Site`` (an older browser), and an ``Origin`` that is ``null`` or whose
   host and port are not the request's ``Host``.

A request with neither header is let through: it comes from no browser (curl, httpx, the
``daylight audit witness`` CLI, API clients), since every browser that runs another site's page
sends one of them on a cross-origin post. Forms keep their own CSRF tokens as well
(``app.web.forms``). Installed on the staff app only (``build_app(refuse_cross_origin=True)``):
the intake API is posted to by API clients and carries no ambient authority, and the intake
forms check with ``app.web.forms.posted_from_elsewhere``, which applies the same rules.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from app.kit.errors import Forbidden, app_error_response

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# "none": navigation the user started (address bar, bookmark, reload), not another page.
TRUSTED_FETCH_SITES = frozenset({"same-origin", "none"})
DEFAULT_PORTS = {"https": 443, "http": 80}


class CrossOrigin(Forbidden):
    code = "cross_origin"
    # English only, not marked for translation: the middleware guards the staff app alone.
    public_message = "This request can only be sent from this site."


def from_elsewhere(fetch_site: str | None, origin: str | None, host: str | None) -> bool:
    """True when the browser's own headers say the request came from another origin.

    ``fetch_site``, ``origin`` and ``host``: the request's ``Sec-Fetch-Site``, ``Origin`` and
    ``Host`` headers, None when absent. Neither of the first two: not a browser, let through.
    """
    if fetch_site is not None:
        return fetch_site.strip().lower() not in TRUSTED_FETCH_SITES
    if origin is None:
        return False
    origin = origin.strip()
    if origin.lower() == "null":
        # An opaque origin: a sandboxed iframe, a data: URL. Never one of our own pages (a
        # browser that posts from our page sends Sec-Fetch-Site: same-origin, checked above).
        return True
    scheme = urlsplit(origin).scheme.lower()
    posted_from = _host_and_port(scheme, origin)
    # Host has no scheme: read with the Origin's, so that a default port written in one header
    # and left out of the other still matches.
    posted_to = _host_and_port(scheme, f"{scheme}://{host}") if host else None
    return posted_from is None or posted_from != posted_to


def _host_and_port(scheme: str, url: str) -> tuple[str, int] | None:
    """A URL's host (lower case) and port (the scheme's default when not written); None when it
    has no host, or no port we can tell."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.path or parts.query:
        return None
    port = port if port is not None else DEFAULT_PORTS.get(scheme)
    return None if port is None else (parts.hostname, port)


class CrossOriginMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        if _refused(scope):
            # JSON in the one error model, for pages too: our own pages' posts say same-origin
            # and are never refused, so no staff member reads this in place of a page.
            await app_error_response(CrossOrigin())(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _refused(scope: Scope) -> bool:
    values: dict[bytes, list[str | None]] = {b"sec-fetch-site": [], b"origin": [], b"host": []}
    for name, value in scope["headers"]:
        if name in values:
            values[name].append(value.decode("latin-1"))
    # A header sent twice is read strictly: any of its values that says "elsewhere" refuses,
    # and with two Hosts no Origin can be shown to match.
    hosts = values[b"host"] if len(values[b"host"]) == 1 else [None]
    return any(
        from_elsewhere(fetch_site, origin, hosts[0])
        for fetch_site in values[b"sec-fetch-site"] or [None]
        for origin in values[b"origin"] or [None]
    )
