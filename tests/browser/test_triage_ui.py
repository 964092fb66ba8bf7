"""A tip's way from the queue to a verified case, in real Chromium with JavaScript off.

A caseworker claims it and asks a question; the submitter answers with the
receipt; the caseworker proposes verification and a different member, a lead,
confirms it (two-person rule); the lead groups it into a case.
"""

from __future__ import annotations

import secrets

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_ui import log_in_demo, no_js_context_page, submit
from tests.support.screenshots import screenshot_dir

pytestmark = pytest.mark.serve


def shoot(page: Page, name: str) -> None:
    path = screenshot_dir() / f"staff-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def act(page: Page, action: str) -> None:
    response = submit(page, f'button[data-action="{action}"]')
    assert response.status == 200, page.content()
    assert page.locator(".error").count() == 0, page.locator(".error").text_content()


def test_claim_question_answer_two_person_verification_and_a_case(
    browser: Browser, no_js_page: Page, served_demo: ServedDemo
) -> None:
    narrative = f"A man from the station phoned my father in Urumqi. {secrets.token_hex(4)}"
    submitted = httpx.post(
        f"{served_demo.intake_url}/api/v1/tips",
        json={
            "narrative": narrative,
            "tactics": ["family_pressure", "station_contact"],
            "host_country": "IE",
            "host_city": "Dublin",
            "urgent": True,
        },
    )
    assert submitted.status_code == 201
    receipt = submitted.json()["receipt"]

    caseworker = no_js_page
    log_in_demo(caseworker, served_demo, "caseworker")
    caseworker.goto(f"{served_demo.staff_url}/tips?status=new")
    assert caseworker.locator("script").count() == 0
    shoot(caseworker, "queue")
    # The queue shows no content: the caseworker opens the new urgent reports until it is this one.
    caseworker.goto(f"{served_demo.staff_url}/tips?status=new&urgent=true")
    links = [link.get_attribute("href") for link in caseworker.locator("table a[data-ref]").all()]
    for link in links:
        caseworker.goto(f"{served_demo.staff_url}{link}")
        if narrative in (caseworker.locator(".narrative").text_content() or ""):
            break
    else:
        raise AssertionError("the new urgent report is not in the queue")
    act(caseworker, "claim")
    assert caseworker.locator("[data-status]").get_attribute("data-status") == "in_review"
    caseworker.fill("#message-body", "Which month did the calls start?")
    act(caseworker, "message")
    assert caseworker.locator("[data-status]").get_attribute("data-status") == "needs_info"
    shoot(caseworker, "tip")
    tip_url = caseworker.url

    # The submitter, in a browser of their own, answers with the receipt.
    with no_js_context_page(browser) as submitter:
        submitter.goto(f"{served_demo.intake_url}/followup")
        submitter.fill("#receipt", receipt)
        assert submit(submitter, "button.primary").status == 200
        assert "Which month did the calls start?" in (submitter.locator(".messages").text_content() or "")
        submitter.fill("#body", "In March, every Sunday.")
        assert submit(submitter, 'form[action^="/followup/reply"] button[type="submit"]').status == 201

    caseworker.goto(f"{served_demo.staff_url}/tips?mine=true")
    assert "new answer" in (caseworker.locator("table").text_content() or "")
    caseworker.goto(tip_url)
    assert "In March, every Sunday." in (caseworker.locator(".messages").text_content() or "")
    act(caseworker, "propose")
    assert caseworker.locator('button[data-action="confirm"]').count() == 0  # a caseworker cannot confirm

    # The second person: a lead.
    with no_js_context_page(browser) as lead:
        log_in_demo(lead, served_demo, "lead")
        lead.goto(tip_url)
        act(lead, "confirm")
        assert lead.locator("[data-status]").get_attribute("data-status") == "verified"
        with lead.expect_navigation():
            lead.click('a[data-action="new-case"]')
        lead.fill("#title", "Calls from the Dublin station to families in Xinjiang")
        lead.fill("#summary", "Relatives phoned on Sundays; pressure to return.")
        lead.check('input[name="tactics"][value="family_pressure"]')
        lead.fill("#host_country", "IE")
        response = submit(lead, 'button[data-action="create-case"]')
        assert response.status == 200, lead.content()
        assert "/cases/" in lead.url
        assert "Calls from the Dublin station" in (lead.locator("h1").text_content() or "")
        assert lead.locator(f'a[href="{tip_url.removeprefix(served_demo.staff_url)}"]').count() == 1
        shoot(lead, "case")
        case_url = lead.url
        with lead.expect_navigation():
            lead.click("[data-nav=cases]")
        assert "Calls from the Dublin station" in (lead.locator("table").text_content() or "")

        # The caseworker links the case to the Dublin station; the lead, another member, confirms.
        caseworker.goto(case_url)
        dublin = caseworker.locator("#station_id option", has_text="Dublin, IE").get_attribute("value")
        assert dublin is not None
        caseworker.select_option("#station_id", dublin)
        caseworker.select_option("#relation", "contacted_via")
        caseworker.fill("#evidence", "The caller said he was from the Dublin office.")
        act(caseworker, "link")
        lead.goto(case_url)
        act(lead, "link_confirm")
        assert "confirmed" in (lead.locator("[data-link]").text_content() or "")
        with lead.expect_navigation():
            lead.click("[data-nav=stations]")
        with lead.expect_navigation():
            lead.click('a[data-station="Dublin"]')
        assert lead.locator("[data-linked-cases]").get_attribute("data-linked-cases") == "1"
        shoot(lead, "station")
        lead.goto(f"{served_demo.staff_url}/stations/map")
        assert lead.locator("svg circle").count() == 9
        assert "Dublin, IE: 1" in lead.content()
        shoot(lead, "map")
        lead.goto(f"{served_demo.staff_url}/statistics")
        shoot(lead, "statistics")
