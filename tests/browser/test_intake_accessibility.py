"""Every intake page a submitter can meet, in every language, checked with axe-core in real
Chromium: each step of the form, the review, the receipt, the follow-up and safety pages, and the
error pages (issue 20). axe needs script, so these contexts run it with the CSP bypassed; the
pages themselves carry none (tests/browser/test_submitter_no_js.py walks them with script off)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_accessibility import Findings, axe_page
from tests.browser.test_submitter_no_js import LANGUAGES

pytestmark = pytest.mark.serve

STEP_ANSWERS = {
    "what": lambda page: page.check('input[name="tactics"][value="family_pressure"]'),
    "where": lambda page: page.select_option("#host_country", "IE"),
    "who": lambda page: page.check('input[name="perpetrators"][value="service_station"]'),
    "story": lambda page: page.fill("#narrative", "They called my mother and told her I must come home."),
    "contact": lambda page: page.check('input[name="referral_consent"][value="partners_only"]'),
}


def go(page: Page, url: str, status: int = 200) -> None:
    response = page.goto(url)
    assert response is not None
    assert response.status == status, f"{url}: {response.status}"


def next_page(page: Page, selector: str) -> None:
    with page.expect_navigation():
        page.click(selector)


def test_every_intake_page_passes_axe_in_every_language(browser: Browser, served_demo: ServedDemo) -> None:
    findings = Findings()
    base = served_demo.intake_url
    for lang in LANGUAGES:
        with axe_page(browser) as page:
            go(page, f"{base}/?lang={lang}")
            for step, answer in STEP_ANSWERS.items():
                findings.check(page, f"{lang} step {step}")
                answer(page)
                next_page(page, 'button[name="go"][value="next"]')
            findings.check(page, f"{lang} review")
            next_page(page, 'form#report-form button.primary[type="submit"]')
            findings.check(page, f"{lang} receipt")
            next_page(page, 'form[action^="/followup/duress"] button')
            findings.check(page, f"{lang} duress code")
            next_page(page, "#back-form button")
            findings.check(page, f"{lang} report's page")
            for path in ("/followup", "/safety"):
                go(page, f"{base}{path}?lang={lang}")
                findings.check(page, f"{lang} {path}")
            go(page, f"{base}/nowhere?lang={lang}", status=404)
            findings.check(page, f"{lang} 404 page")
            go(page, f"{base}/report/step?lang={lang}", status=405)
            findings.check(page, f"{lang} 405 page")
    assert not findings.lines, findings.report()
