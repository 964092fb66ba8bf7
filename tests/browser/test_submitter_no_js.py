"""The intake form as a submitter on Tor Browser's "Safest" level uses it: JavaScript off.

Everything a submitter needs (sending a report with evidence, choosing a
language, correcting a mistake) must work with plain HTML forms and links.
"""

from __future__ import annotations

import re
import secrets

import httpx2 as httpx
import pytest
from playwright.sync_api import Page

from tests.browser.conftest import ServedDemo
from tests.support.screenshots import screenshot_dir

pytestmark = pytest.mark.serve

RECEIPT_PATTERN = re.compile(r"^([0-9A-Z]{4}-){5}[0-9A-Z]{4}$")
SCREENSHOT = screenshot_dir() / "intake-form.png"


def stored_blob_count(served: ServedDemo) -> int:
    blobs_dir = served.data_dir / "blobs"  # created with the first attachment
    return len(list(blobs_dir.iterdir())) if blobs_dir.exists() else 0


def test_a_report_with_evidence_sent_without_javascript_gets_a_working_receipt(
        no_js_page: Page, served_demo: ServedDemo) -> None:
    page = no_js_page
    page.goto(f"{served_demo.intake_url}/")
    assert page.locator("script").count() == 0
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    blobs_before = stored_blob_count(served_demo)

    page.check('input[name="tactics"][value="station_contact"]')
    page.fill("#host_country", "IE")
    page.fill("#host_city", "Dublin")
    page.fill("#narrative", f"Two men from the consulate came to my shop. {secrets.token_hex(4)}")
    page.set_input_files("#files", files=[{"name": "photo-of-letter.txt", "mimeType": "text/plain",
                                            "buffer": b"the letter they left, transcribed"}])
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    response = navigation.value
    assert response is not None
    assert response.status == 201  # the report is created; the body is the receipt page

    receipt = (page.locator(".receipt").text_content() or "").strip()
    assert RECEIPT_PATTERN.match(receipt), receipt
    assert stored_blob_count(served_demo) == blobs_before + 1  # the file went through, encrypted

    followup = httpx.post(f"{served_demo.intake_url}/api/v1/followup", json={"receipt": receipt})
    assert followup.status_code == 200
    assert followup.json() == {"status": "new", "messages": []}


def test_the_uyghur_link_turns_the_page_right_to_left(no_js_page: Page, served_demo: ServedDemo) -> None:
    page = no_js_page
    page.goto(f"{served_demo.intake_url}/")
    assert page.locator("html").get_attribute("dir") == "ltr"
    with page.expect_navigation():
        page.click('nav.languages a[hreflang="ug"]')
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert page.locator("html").get_attribute("lang") == "ug"
    assert page.locator("input[name=language]").get_attribute("value") == "ug"


def test_an_invalid_country_shows_the_errors_and_keeps_what_was_typed(
        no_js_page: Page, served_demo: ServedDemo) -> None:
    page = no_js_page
    page.goto(f"{served_demo.intake_url}/")
    narrative = "They phoned my mother in Kashgar and asked where I live.\nTwice in March."
    page.check('input[name="tactics"][value="family_pressure"]')
    page.fill("#host_country", "ZZ")
    page.fill("#narrative", narrative)
    with page.expect_navigation() as navigation:
        page.click("button[type=submit]")
    response = navigation.value
    assert response is not None
    assert response.status == 422

    assert page.locator(".errors[role=alert]").is_visible()
    assert page.locator(".receipt").count() == 0
    assert page.input_value("#narrative") == narrative
    assert page.input_value("#host_country") == "ZZ"
    assert page.is_checked('input[name="tactics"][value="family_pressure"]')
