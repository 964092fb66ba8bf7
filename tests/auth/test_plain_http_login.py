"""A login over plain http says why it cannot work, instead of "the form expired" forever.

Production cookies are __Host- and Secure: a browser on plain http drops the pre-login cookie the
login page sets, so its login form always arrives without it. The app sees http behind a TLS
proxy as well and trusts no proxy header, so it judges by the address the browser used: the
https staff origin (or a .onion or loopback name) means the form did expire; any other name
means plain http, which the login page says as soon as it is loaded."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from app.entrypoints.apps import create_staff_app
from app.kit.config import Settings
from app.kit.db import Database
from tests.conftest import Organisation

NOT_HTTPS = "This connection is not HTTPS, so your browser will not keep the login cookie."
EXPIRED = "This login form expired. Try again."
NO_COOKIE = "Your browser sent no login cookie."

MakeClient = Callable[..., TestClient]


@pytest.fixture
def client_for(settings: Settings, database: Database, organisation: Organisation) -> Iterator[MakeClient]:
    opened: list[TestClient] = []

    def make(base_url: str, staff_origin: str | None = "https://testserver") -> TestClient:
        configured = settings.model_copy(update={"staff_origin": staff_origin})
        client = TestClient(
            create_staff_app(configured, database=database), base_url=base_url, raise_server_exceptions=False
        )
        opened.append(client.__enter__())
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def post_login(client: TestClient, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """What a browser does: load the page (keeping its cookie if it may), post the form."""
    page = client.get("/login")
    match = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert match
    response = client.post(
        "/login",
        data={"login_token": match.group(1), "username": "someone", "password": "x", "otp": "1"},
        headers=headers or {},
    )
    return response.status_code, response.text


def test_plain_http_to_another_name_than_the_https_staff_origin_says_so(client_for: MakeClient) -> None:
    client = client_for("http://staff.example.org")
    page = client.get("/login")
    assert "__Host-daylight_login" in page.headers["set-cookie"]
    assert NOT_HTTPS in page.text  # said before a password is typed
    status, text = post_login(client)  # the client, like a browser, keeps no Secure cookie on http
    assert status == 403
    assert NOT_HTTPS in text
    assert "Use the https:// or .onion address (https://testserver)." in text
    assert EXPIRED not in text
    # Posted with no page loaded before: the same.
    unprepared = client.post("/login", data={"username": "someone"})
    assert unprepared.status_code == 403
    assert NOT_HTTPS in unprepared.text


def test_the_https_staff_origin_behind_a_tls_proxy_still_says_expired(client_for: MakeClient) -> None:
    # nginx terminates TLS and forwards plain http with the browser's Host: the app sees http.
    client = client_for("http://staff.example.org", staff_origin="https://staff.example.org")
    no_cookie = client.post("/login", data={"username": "someone"})
    assert no_cookie.status_code == 403
    assert EXPIRED in no_cookie.text
    # ... unless the browser itself says it posted from a plain http page.
    status, text = post_login(client, headers={"origin": "http://staff.example.org"})
    assert status == 403
    assert NOT_HTTPS in text


@pytest.mark.parametrize(
    "base_url",
    [
        "https://testserver",  # TLS all the way: the cookie was kept, so the form did expire
        "http://abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuv.onion",  # Tor keeps it
        "http://localhost:8001",
    ],
)
def test_where_browsers_keep_secure_cookies_a_missing_one_means_expired(
    client_for: MakeClient, base_url: str
) -> None:
    response = client_for(base_url).post("/login", data={"username": "someone"})
    assert response.status_code == 403
    assert EXPIRED in response.text
    assert NOT_HTTPS not in response.text


def test_without_a_staff_origin_the_page_says_what_to_check(client_for: MakeClient) -> None:
    status, text = post_login(client_for("http://192.0.2.10:8001", staff_origin=None))
    assert status == 403
    assert NO_COOKIE in text
    assert "use the https:// or .onion address" in text


def test_a_wrong_token_with_its_cookie_is_still_an_expired_form(client_for: MakeClient) -> None:
    client = client_for("https://testserver")
    client.get("/login")
    response = client.post("/login", data={"login_token": "forged", "username": "someone"})
    assert response.status_code == 403
    assert EXPIRED in response.text


def test_the_https_staff_origin_loads_the_login_page_without_a_warning(client_for: MakeClient) -> None:
    for base_url, staff_origin in [
        ("http://staff.example.org", "https://staff.example.org"),  # behind a TLS proxy
        ("http://staff.example.org:8443", "https://staff.example.org:8443"),
        ("https://testserver", "https://testserver"),
        ("http://192.0.2.10:8001", None),  # nothing to compare with: said only when a post fails
    ]:
        page = client_for(base_url, staff_origin=staff_origin).get("/login")
        assert page.status_code == 200
        assert NOT_HTTPS not in page.text
        assert NO_COOKIE not in page.text


def test_a_browser_that_sent_the_cookie_back_is_not_told_it_is_on_plain_http(
    client_for: MakeClient,
) -> None:
    """Another name than the staff origin, yet the cookie came back: a TLS proxy serves that name."""
    client = client_for("http://other.example.org")
    client.cookies.set("__Host-daylight_login", "a-token-from-an-earlier-page")
    page = client.get("/login")
    assert NOT_HTTPS not in page.text
    refused = client.post("/login", data={"login_token": "another", "username": "someone"})
    assert refused.status_code == 403
    assert EXPIRED in refused.text
    assert NOT_HTTPS not in refused.text
