"""The two-person rule in an organisation with a single lead (the demo: demo-lead), in real
Chromium with JavaScript off.

What the lead proposes waits for a second person and the page offers the lead no confirm button
it would be refused; what a caseworker proposes, the lead confirms.
"""

from __future__ import annotations

import secrets

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_ui import log_in_demo, no_js_context_page, submit

pytestmark = pytest.mark.serve


def act(page: Page, action: str) -> None:
    response = submit(page, f'button[data-action="{action}"]')
    assert response.status == 200, page.content()
    assert page.locator(".error").count() == 0, page.locator(".error").text_content()


def submitted_report(served: ServedDemo, words: str) -> str:
    """A new urgent report whose narrative carries ``words``; returns the narrative."""
    narrative = f"{words} {secrets.token_hex(4)}"
    response = httpx.post(
        f"{served.intake_url}/api/v1/tips",
        json={"narrative": narrative, "tactics": ["station_contact"], "host_country": "IE", "urgent": True},
    )
    assert response.status_code == 201
    return narrative


def open_report(page: Page, served: ServedDemo, narrative: str) -> str:
    """Opens, from the queue, the new urgent report with this narrative; returns its page's URL."""
    page.goto(f"{served.staff_url}/tips?status=new&urgent=true&limit=200")
    links = [link.get_attribute("href") for link in page.locator("table a[data-ref]").all()]
    for link in links:
        page.goto(f"{served.staff_url}{link}")
        if narrative in (page.locator(".narrative").text_content() or ""):
            return page.url
    raise AssertionError("the new report is not in the queue")


def status_text(page: Page) -> str:
    return (page.locator("[data-status]").text_content() or "").strip()


def test_a_single_lead_waits_for_a_second_person_and_confirms_a_caseworkers_proposal(
    browser: Browser, no_js_page: Page, served_demo: ServedDemo
) -> None:
    by_lead = submitted_report(served_demo, "The lead's report: calls from the station.")
    by_caseworker = submitted_report(served_demo, "The caseworker's report: a visit at home.")

    lead = no_js_page
    log_in_demo(lead, served_demo, "lead")
    open_report(lead, served_demo, by_lead)
    act(lead, "claim")
    act(lead, "propose")
    # The only lead proposed it: no button the service would refuse, and why there is none.
    assert lead.locator('button[data-action="confirm"]').count() == 0
    assert lead.locator("[data-awaiting-confirmation]").count() == 1
    assert "Waiting for another lead" in (lead.locator("[data-awaiting-confirmation]").text_content() or "")
    assert lead.locator("[data-status]").get_attribute("data-status") == "in_review"
    assert "awaiting another lead" in status_text(lead)

    with no_js_context_page(browser) as caseworker:
        log_in_demo(caseworker, served_demo, "caseworker")
        caseworker_tip = open_report(caseworker, served_demo, by_caseworker)
        act(caseworker, "claim")
        act(caseworker, "propose")
        assert caseworker.locator('button[data-action="confirm"]').count() == 0

    lead.goto(caseworker_tip)
    act(lead, "confirm")
    assert lead.locator("[data-status]").get_attribute("data-status") == "verified"
    text = status_text(lead)
    assert text.startswith("verified")
    assert "awaiting" not in text
    assert lead.locator('a[data-action="new-case"]').count() == 1
