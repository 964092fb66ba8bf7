"""Every state-changing staff route refuses a cross-site or cross-origin form post, body or no
body (DESIGN §8; app.web.cross_origin).

The walk reads the staff app's route table, so a route added later is covered without a row
here: a route that took such a post (as the bodyless claim, release, verification, logout and
checkpoint routes once did) fails it.
"""

from __future__ import annotations

import re
import secrets
import uuid

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from httpx2 import Response

from app.auth.models import Role
from app.kit.logs import REQUEST_ID_HEADER
from app.kit.security_headers import SECURITY_HEADERS
from app.web.cross_origin import CrossOrigin, from_elsewhere
from tests.auth.factories import StaffMember
from tests.conftest import Client, Organisation
from tests.test_route_guards import EXPECTED_ACCESS

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The routes that read no body, which "requires application/json" never protected.
BODYLESS_ROUTES = frozenset(
    {
        ("POST", "/api/v1/tips/{tip_id}/claim"),
        ("POST", "/api/v1/tips/{tip_id}/release"),
        ("POST", "/api/v1/tips/{tip_id}/verification"),
        ("POST", "/api/v1/tips/{tip_id}/verification/confirm"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/auth/logout-everywhere"),
        ("POST", "/api/v1/audit/checkpoints"),
    }
)
# What a browser sends on a post from a page of another origin.
FOREIGN_HEADERS: tuple[dict[str, str], ...] = (
    {"sec-fetch-site": "cross-site"},
    # A sibling subdomain, or the intake app on this host: same site, another origin.
    {"sec-fetch-site": "same-site"},
    # Older browsers: no Sec-Fetch-Site, an Origin.
    {"origin": "https://evil.example"},
    # A sandboxed iframe or a data: URL hides its origin.
    {"origin": "null"},
)
FORM = {"content-type": "application/x-www-form-urlencoded"}
ACTIONS = {"/tips/": "claim", "/keys/": "grant", "/cases/": "notes"}


def unsafe_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) of the app, included routers flattened, whose method changes state."""
    return {
        (method, context.path)
        for context in iter_route_contexts(app.routes)
        if context.path is not None
        for method in context.methods or ()
        if method in UNSAFE_METHODS
    }


def concrete(path: str) -> str:
    """The path with plausible values in its parameters."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "token":
            return secrets.token_urlsafe(32)
        if name == "action":
            return next(action for prefix, action in ACTIONS.items() if path.startswith(prefix))
        if name == "seq":
            return "1"
        return str(uuid.uuid4())

    return re.sub(r"\{([a-z_]+)\}", value, path)


def member_for(organisation: Organisation, method: str, path: str) -> StaffMember:
    """A member whose role may use the route (a public route: any)."""
    allowed, _ = EXPECTED_ACCESS.get((method, path), (frozenset({Role.LEAD}), 403))
    return organisation[min(allowed, key=lambda role: role.value)]


def form_post(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Response:
    return client.request(
        method, concrete(path), content=b"a=b", headers={**FORM, **headers}, follow_redirects=False
    )


def is_cross_origin_refusal(response: Response) -> bool:
    if response.status_code != 403 or response.headers.get("content-type") != "application/json":
        return False
    return response.json() == {
        "error": CrossOrigin.code,
        "detail": CrossOrigin.public_message,
    }


def test_every_state_changing_staff_route_refuses_a_post_from_another_origin(
    staff_client: TestClient, signed_in: Client, organisation: Organisation
) -> None:
    routes = unsafe_routes(staff_client.app)  # type: ignore[arg-type]
    assert routes >= BODYLESS_ROUTES
    assert len(routes) > len(BODYLESS_ROUTES)
    members = set()
    taken = []
    for method, path in sorted(routes):
        member = member_for(organisation, method, path)
        members.add(member)
        for headers in FOREIGN_HEADERS:
            # Signed in as a role the route serves, and without a session (the login form).
            for who, client in ((member.account.role, signed_in(member)), ("anonymous", staff_client)):
                response = form_post(client, method, path, headers)
                if not is_cross_origin_refusal(response):
                    taken.append((method, path, headers, who, response.status_code))
    assert not taken
    # Nothing was done: no logout went through.
    for member in members:
        assert signed_in(member).get("/api/v1/auth/session").status_code == 200


def test_the_refusal_carries_the_security_headers_and_a_request_id(staff_client: TestClient) -> None:
    refused = form_post(staff_client, "POST", "/api/v1/auth/logout", {"sec-fetch-site": "cross-site"})
    assert is_cross_origin_refusal(refused)
    assert refused.headers["content-type"] == "application/json"
    for name, value in SECURITY_HEADERS:
        assert refused.headers[name.decode()] == value.decode()
    assert refused.headers[REQUEST_ID_HEADER.decode()]


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_safe_methods_are_never_refused(staff_client: TestClient, method: str) -> None:
    response = staff_client.request(method, "/healthz", headers={"sec-fetch-site": "cross-site"})
    assert response.status_code != 403


# Headers our own pages' posts, and clients that are no browser, send.
OWN_HEADERS: tuple[dict[str, str], ...] = (
    {},
    {"sec-fetch-site": "same-origin"},
    # Typed, bookmarked or reloaded.
    {"sec-fetch-site": "none"},
    # Our Referrer-Policy: no-referrer makes some browsers send Origin: null on our own posts;
    # they send Sec-Fetch-Site as well, which decides.
    {"sec-fetch-site": "same-origin", "origin": "null"},
    {"origin": "https://testserver"},
    {"origin": "https://TestServer:443"},
)


def test_the_bodyless_routes_take_posts_from_this_origin(
    signed_in: Client, organisation: Organisation
) -> None:
    lead = signed_in(organisation[Role.LEAD])
    auditor = signed_in(organisation[Role.AUDITOR])
    for headers in OWN_HEADERS:
        for path in (
            "/api/v1/tips/{tip_id}/claim",
            "/api/v1/tips/{tip_id}/release",
            "/api/v1/tips/{tip_id}/verification",
            "/api/v1/tips/{tip_id}/verification/confirm",
        ):
            # A random tip: past the middleware and the role guard, to "no such tip".
            response = form_post(lead, "POST", path, headers)
            assert response.status_code == 404, (path, headers, response.status_code)
        checkpoint = form_post(auditor, "POST", "/api/v1/audit/checkpoints", headers)
        assert checkpoint.status_code == 201, (headers, checkpoint.status_code)
    # Each ends the session: last, from members signed in for nothing else.
    for role, path in (
        (Role.CASEWORKER, "/api/v1/auth/logout"),
        (Role.ADMIN, "/api/v1/auth/logout-everywhere"),
    ):
        client = signed_in(organisation[role])
        response = form_post(client, "POST", path, {"sec-fetch-site": "same-origin"})
        assert response.status_code == 204, (path, response.status_code)
        assert client.get("/api/v1/auth/session").status_code == 401


def test_a_json_route_takes_a_post_whose_origin_is_this_host(
    signed_in: Client, organisation: Organisation
) -> None:
    member = organisation[Role.LEAD]
    client = signed_in(member)
    for origin in ("https://testserver", "https://testserver:443"):
        response = client.post(
            "/api/v1/auth/step-up", json={"password": member.password}, headers={"origin": origin}
        )
        assert response.status_code == 204, (origin, response.status_code)
    refused = client.post(
        "/api/v1/auth/step-up",
        json={"password": member.password},
        headers={"origin": "https://testserver:8443"},
    )
    assert is_cross_origin_refusal(refused)


def test_the_intake_app_is_not_behind_the_staff_refusal(intake_client: TestClient) -> None:
    # The intake API is posted to by API clients; its forms check for themselves (app.web.forms).
    response = intake_client.post("/api/v1/tips", json={}, headers={"sec-fetch-site": "cross-site"})
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("fetch_site", "origin", "host", "elsewhere"),
    [
        (None, None, "staff.example", False),
        (None, None, None, False),
        ("same-origin", None, "staff.example", False),
        ("none", None, "staff.example", False),
        ("same-origin", "https://evil.example", "staff.example", False),  # Sec-Fetch-Site decides
        ("same-origin", "null", "staff.example", False),
        ("cross-site", None, "staff.example", True),
        ("same-site", None, "staff.example", True),
        ("same-site", "https://staff.example", "staff.example", True),
        ("something-new", None, "staff.example", True),
        (None, "null", "staff.example", True),
        (None, "https://evil.example", "staff.example", True),
        (None, "https://intake.example", "staff.example", True),
        (None, "https://staff.example", "staff.example", False),
        (None, "https://STAFF.example", "staff.example:443", False),
        (None, "http://abc.onion", "abc.onion", False),
        (None, "http://abc.onion", "abc.onion:8080", True),  # the intake app on another port
        (None, "http://abc.onion:8080", "abc.onion:8080", False),
        (None, "https://staff.example", None, True),
        (None, "https://staff.example", "staff.example.evil.example", True),
        (None, "https://staff.example.evil.example", "staff.example", True),
        (None, "https://user@staff.example", "staff.example", True),
        (None, "https://staff.example:notaport", "staff.example", True),
        (None, "not a url", "staff.example", True),
        (None, "", "staff.example", True),
        (None, "file://", "staff.example", True),
    ],
)
def test_from_elsewhere(
    fetch_site: str | None, origin: str | None, host: str | None, elsewhere: bool
) -> None:
    assert from_elsewhere(fetch_site, origin, host) is elsewhere
