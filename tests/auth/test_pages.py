"""The staff UI over HTTP: forms carry CSRF tokens, come from this site only, and errors are pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.auth.models import Role
from tests.auth.factories import StaffMember, login_token
from tests.auth.factories import form_login as post_login_form
from tests.conftest import Organisation


def form_login(client: TestClient, member: StaffMember, step: int = 0) -> int:
    return post_login_form(client, member, otp=member.otp(step)).status_code


def csrf_token(client: TestClient, path: str = "/account") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


def test_form_login_sets_the_session_and_lands_on_the_role_home(
    staff_client: TestClient, organisation: Organisation
) -> None:
    assert form_login(staff_client, organisation[Role.CASEWORKER]) == 303
    home = staff_client.get("/", follow_redirects=False)
    assert home.headers["location"] == "/tips"
    page = staff_client.get("/tips")
    assert page.status_code == 200
    assert "<script" not in page.text.lower()
    assert set(re.findall(r'data-nav="([a-z]+)"', page.text)) == {
        "queue",
        "cases",
        "labels",
        "stations",
        "statistics",
        "account",
    }


def test_a_failed_form_login_says_nothing_specific(
    staff_client: TestClient, organisation: Organisation
) -> None:
    response = staff_client.post(
        "/login",
        data={"login_token": login_token(staff_client), "username": "nobody", "password": "x", "otp": "1"},
    )
    assert response.status_code == 401
    assert "Wrong username, password, passkey or one-time code." in response.text


def test_a_signed_in_form_without_its_csrf_token_is_refused(
    staff_client: TestClient, organisation: Organisation
) -> None:
    member = organisation[Role.LEAD]
    assert form_login(staff_client, member) == 303
    refused = staff_client.post("/account/logout-everywhere", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert "expired" in refused.text
    assert staff_client.get("/api/v1/auth/session").status_code == 200
    accepted = staff_client.post(
        "/account/logout-everywhere", data={"csrf_token": csrf_token(staff_client)}, follow_redirects=False
    )
    assert accepted.status_code == 303
    assert staff_client.get("/api/v1/auth/session").status_code == 401


def test_a_form_from_another_site_is_refused_even_with_a_token(
    staff_client: TestClient, organisation: Organisation
) -> None:
    assert form_login(staff_client, organisation[Role.LEAD]) == 303
    token = csrf_token(staff_client)
    refused = staff_client.post(
        "/account/logout-everywhere", data={"csrf_token": token}, headers={"sec-fetch-site": "cross-site"}
    )
    assert refused.status_code == 403
    assert staff_client.get("/api/v1/auth/session").status_code == 200


def test_pages_of_other_roles_are_html_refusals_and_anonymous_goes_to_login(
    staff_client: TestClient, organisation: Organisation
) -> None:
    assert staff_client.get("/tips", follow_redirects=False).headers["location"] == "/login"
    assert form_login(staff_client, organisation[Role.AUDITOR]) == 303
    refused = staff_client.get("/admin/accounts")
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]
    assert "Not allowed" in refused.text
    # The API keeps JSON errors.
    assert staff_client.get("/api/v1/accounts").json()["error"] == "forbidden"


def test_an_admin_invites_through_the_ui_and_the_link_page_shows_a_qr_code(
    staff_client: TestClient, organisation: Organisation
) -> None:
    assert form_login(staff_client, organisation[Role.ADMIN]) == 303
    created = staff_client.post(
        "/admin/accounts",
        data={
            "csrf_token": csrf_token(staff_client, "/admin/accounts"),
            "username": "ui.member",
            "role": "lead",
        },
    )
    assert created.status_code == 201
    link = re.search(r"<code class=\"link\" data-link>([^<]+)</code>", created.text)
    assert link
    staff_client.cookies.clear()
    page = staff_client.get(link.group(1).replace("http://testserver", "").replace("https://testserver", ""))
    assert page.status_code == 200
    assert "<svg" in page.text
    assert 'role="img"' in page.text
    assert re.search(r"data-totp-secret>[A-Z2-7]{32}<", page.text)


def test_step_up_redirects_only_to_known_pages(staff_client: TestClient, organisation: Organisation) -> None:
    member = organisation[Role.LEAD]
    assert form_login(staff_client, member) == 303
    response = staff_client.post(
        "/account/step-up",
        follow_redirects=False,
        data={
            "csrf_token": csrf_token(staff_client),
            "password": member.password,
            "next": "https://evil.example/",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/account?done=confirmed"
