"""Issue 16's promise in real Chromium against `daylight serve`: members choose notices on their
page, an urgent report sent through the form with JavaScript off reaches each key holder as one
mail within the batch delay, and no mail holds anything of the report."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import ServedDemo, serving_demo
from tests.browser.test_staff_ui import log_in_demo, submit
from tests.browser.test_submitter_no_js import RECEIPT_PATTERN, click_and_wait, fill_report
from tests.notify.conftest import RecordingSmtpServer
from tests.notify.test_delivery import text_of

pytestmark = pytest.mark.serve

BATCH_SECONDS = 2
KEY_HOLDERS = ("caseworker", "lead")


@pytest.fixture
def mail_server() -> Iterator[RecordingSmtpServer]:
    server = RecordingSmtpServer(scheme="smtp")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def served_with_mail(tmp_path: Path, mail_server: RecordingSmtpServer) -> Iterator[ServedDemo]:
    with serving_demo(
        tmp_path,
        environment={
            "DAYLIGHT_SMTP_URL": mail_server.url,
            "DAYLIGHT_MAIL_FROM": "notices@daylight.example",
            "DAYLIGHT_NOTIFY_BATCH_SECONDS": str(BATCH_SECONDS),
            "DAYLIGHT_NOTIFY_INTERVAL_SECONDS": "0.5",
        },
    ) as served:
        yield served


def outbox_rows(served: ServedDemo) -> int:
    with sqlite3.connect(served.data_dir / "daylight.sqlite3") as connection:
        (count,) = connection.execute("SELECT count(*) FROM notification_events").fetchone()
    return int(count)


def opt_in(browser: Browser, served: ServedDemo, role: str) -> None:
    """The member's own page: their address, notices on, at once."""
    context = browser.new_context()
    try:
        page = context.new_page()
        log_in_demo(page, served, role)
        page.goto(f"{served.staff_url}/account")
        page.click('a[href="/account/notifications"]')
        page.fill("#address", f"{role}@staff.example")
        page.check('input[name="enabled"]')
        page.check('input[name="mode"][value="immediate"]')
        response = submit(page)
        assert response.status == 200, page.content()
        assert page.locator('[data-preference="enabled"]').text_content() == "on"
        assert page.locator("[data-mail-off]").count() == 0  # the server has a mail server
    finally:
        context.close()


def wait_for_mail(server: RecordingSmtpServer, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while len(server.messages) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def test_an_urgent_report_from_the_form_mails_each_key_holder_once(
    browser: Browser, no_js_page: Page, served_with_mail: ServedDemo, mail_server: RecordingSmtpServer
) -> None:
    served = served_with_mail
    # The demo's own reports are announced before anyone has an address: nobody hears of them.
    deadline = time.monotonic() + 20
    while outbox_rows(served) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outbox_rows(served) == 0
    for role in (*KEY_HOLDERS, "admin"):
        opt_in(browser, served, role)

    narrative = f"Canary {secrets.token_hex(6)}: they said my father would lose his pension."
    fill_report(no_js_page, served, "en", narrative)
    sent_at = time.monotonic()
    response = click_and_wait(no_js_page, 'form#report-form button.primary[type="submit"]')
    assert response.status == 201
    receipt = (no_js_page.locator(".receipt").text_content() or "").strip()
    assert RECEIPT_PATTERN.match(receipt), receipt

    wait_for_mail(mail_server, len(KEY_HOLDERS), seconds=BATCH_SECONDS + 15)
    assert time.monotonic() - sent_at < BATCH_SECONDS + 15
    time.sleep(BATCH_SECONDS + 1)  # and nothing more comes: one mail each, none for the admin
    assert sorted(mail.recipients[0] for mail in mail_server.messages) == [
        f"{role}@staff.example" for role in KEY_HOLDERS
    ]
    for mail in mail_server.messages:
        assert mail.message["Subject"] == "Daylight: urgent report"
        assert text_of(mail.message) == (
            "1 urgent report arrived.\n/tips\n\n"
            "This notice carries no report content. Sign in to Daylight to read it.\n"
            "To change or stop these notices: /account/notifications\n"
        )
        raw = mail.raw.decode("utf-8", "replace")
        for canary in (
            narrative,
            narrative.split(":")[0],
            "Dublin",
            "Ireland",
            receipt,
            receipt.replace("-", ""),
        ):
            assert canary not in raw
