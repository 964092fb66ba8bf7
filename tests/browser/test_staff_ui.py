"""The staff UI in a real browser with JavaScript off: every staff page is a plain HTML form or link.

Logins use real one-time codes. The server accepts a code only once per
30-second step, and only for a step later than the last one it accepted
(current - 1, current, current + 1), so an account that proves its code twice
in one test uses increasing steps: -1 at enrolment, 0 at the first login.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, Response

from tests.browser.conftest import ServedDemo
from tests.support.screenshots import screenshot_dir

pytestmark = pytest.mark.serve

SCREENSHOTS = screenshot_dir()
LOGIN_ERROR = "Wrong username, password, passkey or one-time code."
NEW_PASSWORD = "tangerine harbour violin 42"
TOTP_STEP_SECONDS = 30
# A code is typed this long before a step ends at the latest, so that it is
# still of the step it was computed for when the server checks it.
STEP_MARGIN_SECONDS = 2.0
NAVIGATION_BY_ROLE = {
    "caseworker": {"queue", "cases", "labels", "stations", "statistics", "account"},
    "lead": {"queue", "cases", "labels", "stations", "statistics", "recipients", "keys", "account"},
    "admin": {"accounts", "witnesses", "login_policy", "review_policy", "notifications", "account"},
    "auditor": {"audit", "account"},
}


def demo_logins(served: ServedDemo) -> dict[str, dict[str, str]]:
    """The demo accounts by role: {"username", "password", "totp_secret", ...}."""
    document = json.loads((served.data_dir / "demo-credentials.json").read_text())
    return {user["role"]: user for user in document["users"]}


def one_time_code(secret: str, step_offset: int = 0) -> str:
    """The code of the current step plus ``step_offset``, never computed just before a step ends."""
    left_in_step = TOTP_STEP_SECONDS - time.time() % TOTP_STEP_SECONDS
    if left_in_step < STEP_MARGIN_SECONDS:
        time.sleep(left_in_step + 0.1)
    return pyotp.TOTP(secret).at(time.time() + step_offset * TOTP_STEP_SECONDS)


@contextmanager
def no_js_context_page(browser: Browser) -> Iterator[Page]:
    """A second (third...) member's browser in the same test: its own cookies, no JavaScript."""
    context = browser.new_context(java_script_enabled=False)
    try:
        yield context.new_page()
    finally:
        context.close()


def submit(page: Page, selector: str = "main button[type=submit]") -> Response:
    with page.expect_navigation() as navigation:
        page.click(selector)
    response = navigation.value
    assert response is not None
    return response


def log_in(page: Page, served: ServedDemo, username: str, password: str, otp: str) -> Response:
    page.goto(f"{served.staff_url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.fill("#otp", otp)
    return submit(page)


def log_in_demo(page: Page, served: ServedDemo, role: str, step_offset: int = 0) -> None:
    login = demo_logins(served)[role]
    response = log_in(
        page, served, login["username"], login["password"], one_time_code(login["totp_secret"], step_offset)
    )
    assert response.status == 200, page.content()
    assert page.locator("form.logout").count() == 1


def log_out(page: Page) -> None:
    response = submit(page, "header form.logout button[type=submit]")
    assert response.status == 200
    assert page.url.endswith("/login")
    assert page.locator("form.logout").count() == 0


def navigation_keys(page: Page) -> set[str]:
    return {link.get_attribute("data-nav") or "" for link in page.locator("[data-nav]").all()}


def invite(page: Page, username: str, role: str) -> str:
    """As a signed-in admin: invite a member from the Accounts page; returns the one-time link."""
    with page.expect_navigation():
        page.click("[data-nav=accounts]")
    page.fill("#username", username)
    page.select_option("#role", role)
    response = submit(page)
    assert response.status == 201, page.content()
    link = (page.locator("code[data-link]").text_content() or "").strip()
    assert "/link/" in link, link
    return link


def activate(page: Page, link: str, screenshot: Path | None = None) -> str:
    """Open an activation link, enrol the authenticator and set a password; returns the TOTP secret."""
    page.goto(link)
    assert page.locator("script").count() == 0
    secret = (page.locator("code[data-totp-secret]").text_content() or "").strip()
    assert secret
    assert page.locator("svg[role=img]").count() == 1  # the QR code, inline
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=True)
    page.fill("#new_password", NEW_PASSWORD)
    page.fill("#otp", one_time_code(secret, -1))
    response = submit(page)
    assert response.status == 200, page.content()
    assert "You can now log in" in (page.locator("main").text_content() or "")
    return secret


def test_an_invited_member_activates_enrols_logs_in_and_out(
    no_js_page: Page, served_demo: ServedDemo
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = no_js_page
    page.goto(f"{served_demo.staff_url}/login")
    assert page.locator("script").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "staff-login.png"), full_page=True)

    log_in_demo(page, served_demo, "admin")
    link = invite(page, "new-caseworker", "caseworker")
    assert "new-caseworker" in (page.locator("table").text_content() or "")
    page.screenshot(path=str(SCREENSHOTS / "staff-accounts.png"), full_page=True)
    log_out(page)

    secret = activate(page, link, screenshot=SCREENSHOTS / "staff-activation.png")

    response = log_in(page, served_demo, "new-caseworker", NEW_PASSWORD, one_time_code(secret, 0))
    assert response.status == 200, page.content()
    assert page.url.endswith("/tips")
    assert navigation_keys(page) == {"queue", "cases", "labels", "stations", "statistics", "account"}
    assert [label.strip() for label in page.locator("[data-nav]").all_text_contents()] == [
        "Queue",
        "Cases",
        "Labels",
        "Stations",
        "Statistics",
        "My account",
    ]
    log_out(page)


def test_a_locked_out_member_gets_the_same_answer_as_a_wrong_password(
    no_js_page: Page, served_demo: ServedDemo
) -> None:
    page = no_js_page
    lead = demo_logins(served_demo)["lead"]
    for attempt in range(5):
        response = log_in(page, served_demo, lead["username"], f"not the password {attempt}", "000000")
        assert response.status == 401
        assert (page.locator(".error[role=alert]").text_content() or "").strip() == LOGIN_ERROR

    response = log_in(
        page, served_demo, lead["username"], lead["password"], one_time_code(lead["totp_secret"])
    )
    assert response.status == 401
    assert page.url.endswith("/login")
    assert (page.locator(".error[role=alert]").text_content() or "").strip() == LOGIN_ERROR
    assert page.locator("form.logout").count() == 0


def test_each_role_sees_only_its_own_pages(browser: Browser, served_demo: ServedDemo) -> None:
    # A page of another role, for each role: the 403 page, never the content.
    forbidden = {
        "caseworker": "/admin/accounts",
        "lead": "/admin/accounts",
        "admin": "/tips",
        "auditor": "/admin/accounts",
    }
    for role, expected in NAVIGATION_BY_ROLE.items():
        with no_js_context_page(browser) as page:
            log_in_demo(page, served_demo, role)
            assert navigation_keys(page) == expected, role

            response = page.goto(f"{served_demo.staff_url}{forbidden[role]}")
            assert response is not None
            assert response.status == 403, role
            assert (page.locator("h1").text_content() or "").strip() == "Not allowed"
            assert page.locator("table").count() == 0  # no accounts list, no queue

    with no_js_context_page(browser) as page:
        response = page.goto(f"{served_demo.staff_url}/tips")
        assert response is not None
        assert response.status == 200
        assert page.url == f"{served_demo.staff_url}/login"
        assert page.locator("#username").is_visible()


def test_a_lead_grants_and_revokes_the_intake_key_from_the_keys_page(
    browser: Browser, served_demo: ServedDemo
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    member = "second-caseworker"
    with no_js_context_page(browser) as admin:
        log_in_demo(admin, served_demo, "admin")
        link = invite(admin, member, "caseworker")
    with no_js_context_page(browser) as newcomer:
        secret = activate(newcomer, link)
        # The member reads out the fingerprint of the key pair they just made.
        response = log_in(newcomer, served_demo, member, NEW_PASSWORD, one_time_code(secret, 0))
        assert response.status == 200, newcomer.content()
        newcomer.goto(f"{served_demo.staff_url}/account")
        fingerprint = (newcomer.locator("code[data-fingerprint]").text_content() or "").strip()
        assert fingerprint

    with no_js_context_page(browser) as lead, no_js_context_page(browser) as caseworker:
        log_in_demo(lead, served_demo, "lead")
        with lead.expect_navigation():
            lead.click("[data-nav=keys]")
        # Activated through a link: awaiting a lead's confirmation, with nothing to grant yet.
        awaiting = lead.locator(f'tr[data-awaiting="{member}"]')
        assert awaiting.count() == 1
        assert lead.locator(f'button[data-member="{member}"]').count() == 0
        awaiting.locator("input[name=fingerprint]").fill(fingerprint.upper().replace(" ", "-"))
        response = submit(lead, f'button[data-confirm="{member}"]')
        assert response.status == 200, lead.content()
        assert lead.url.endswith("/keys?done=member_confirmed")
        assert "Key confirmed" in (lead.locator("p.notice").text_content() or "")
        assert lead.locator(f'tr[data-awaiting="{member}"]').count() == 0
        button = lead.locator(f'button[data-member="{member}"]')
        row = lead.locator("tr", has=button)
        assert row.locator("td").nth(2).text_content() == "not held"
        # The password was typed at login, less than five minutes ago: no confirmation asked.
        assert lead.locator("#step_up_password").count() == 0
        assert (button.text_content() or "").strip() == "Grant"
        response = submit(lead, f'button[data-member="{member}"]')
        assert response.status == 200, lead.content()
        assert lead.url.endswith("/keys")
        assert row.locator("td").nth(2).text_content() == "held"
        assert (button.text_content() or "").strip() == "Revoke"

        # The grant takes effect at the member's next login.
        response = log_in(caseworker, served_demo, member, NEW_PASSWORD, one_time_code(secret, 1))
        assert response.status == 200, caseworker.content()
        reports = caseworker.locator('a[href^="/tips/"]')
        assert reports.count() >= 1
        caseworker.screenshot(path=str(SCREENSHOTS / "staff-queue.png"), full_page=True)
        with caseworker.expect_navigation():
            reports.first.click()
        assert caseworker.get_by_role("heading", name="Narrative").count() == 1

        response = submit(lead, f'button[data-member="{member}"]')
        assert response.status == 200, lead.content()
        assert row.locator("td").nth(2).text_content() == "not held"

        # Revoking ended the member's sessions, with the unlocked key in them.
        response = caseworker.reload()
        assert response is not None
        assert caseworker.url == f"{served_demo.staff_url}/login"
        assert caseworker.locator("form.logout").count() == 0
