"""The caseworker's desk at real volume, in Chromium with JavaScript off, on a 500-report demo.

A caseworker finds the urgent Uyghur-language reports about pressure on family through the
filters, and a report by a Chinese word of its narrative (no spaces in Chinese); a lead labels
and assigns twenty reports, each in one step. None of the reports was opened before: the queue
indexed them when the key holder first looked.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_ui import log_in_demo, no_js_context_page, submit

pytestmark = pytest.mark.serve

BULK_SIZE = 20


def rows(page: Page) -> list[dict[str, str]]:
    """The queue's rows as the member reads them: reference, language, tactics, status, assignee."""
    found = []
    for row in page.locator("table.queue tbody tr[data-row]").all():
        cells = row.locator("td").all()
        texts = [cell.inner_text().strip() for cell in cells]
        # Tick, report (ref, urgency, excerpt), status, language, tactics, where, assignee, ...
        found.append(
            {
                "ref": row.get_attribute("data-row") or "",
                "report": texts[1],
                "status": texts[2],
                "language": texts[3],
                "tactics": texts[4],
                "assignee": texts[6],
            }
        )
    return found


def test_a_caseworker_filters_and_searches_five_hundred_reports_none_of_them_opened(
    no_js_page: Page, served_demo_500: ServedDemo
) -> None:
    served = served_demo_500
    page = no_js_page
    page.set_default_timeout(90_000)  # the first queue indexes 500 reports on a shared machine
    log_in_demo(page, served, "caseworker")
    first = page.goto(f"{served.staff_url}/tips")
    assert first is not None
    assert first.status == 200
    assert page.locator("script").count() == 0
    # Words, never codes: no tactic code and no station id on the page.
    assert "family_pressure" not in page.inner_text("table.queue")

    page.select_option('select[name="language"]', "ug")
    page.select_option('select[name="urgent"]', "true")
    page.select_option('select[name="tactic"]', "family_pressure")
    assert submit(page, "form.filters button[type=submit]").status == 200
    found = rows(page)
    assert len(found) >= 10
    for row in found:
        assert row["language"] == "Uyghur"
        assert "family pressured" in row["tactics"]
        assert "urgent" in row["report"]
    counted = sum(
        int(count) for count in page.locator(".status-counts .count").all_inner_texts() if count.strip()
    )
    assert counted == len(found)

    page.goto(f"{served.staff_url}/tips")
    page.fill("#q", "劝返")
    assert submit(page, "form.search button[type=submit]").status == 200
    matches = page.locator("p.matches").inner_text()
    assert int(re.match(r"(\d+) matching", matches).group(1)) >= 20  # type: ignore[union-attr]
    searched = rows(page)
    assert searched
    assert all(row["language"] == "Chinese (Simplified)" for row in searched)
    assert any("劝返" in row["report"] for row in searched)
    # A word that is in no report finds nothing.
    page.fill("#q", "zebracrossingnowhere")
    submit(page, "form.search button[type=submit]")
    assert page.locator("p.matches").inner_text().startswith("0 matching")


def test_a_lead_labels_and_assigns_twenty_reports_each_in_one_step(
    browser: Browser, no_js_page: Page, served_demo_500: ServedDemo
) -> None:
    served = served_demo_500
    lead = no_js_page
    lead.set_default_timeout(90_000)
    log_in_demo(lead, served, "lead")
    lead.goto(f"{served.staff_url}/labels")
    lead.fill('input[name="name"]', "Dublin station follow-up")
    assert submit(lead, 'form[action="/labels"] button[type=submit]').status == 200

    lead.goto(f"{served.staff_url}/tips?status=new&limit={BULK_SIZE}")
    chosen = [row["ref"] for row in rows(lead)]
    assert len(chosen) == BULK_SIZE
    for box in lead.locator('input[name="tip_id"]').all():
        box.check()
    lead.select_option('form#bulk select[name="action"]', "label")
    lead.select_option('form#bulk select[name="label_id"]', label="Dublin station follow-up")
    response = submit(lead, "form#bulk button[type=submit]")
    assert response.status == 200
    assert lead.locator(".error").count() == 0

    label_id = lead.eval_on_selector(
        'select[name="label"] option:text("Dublin station follow-up")', "option => option.value"
    )
    lead.goto(f"{served.staff_url}/tips?label={label_id}&limit=50")
    labelled = rows(lead)
    assert sorted(row["ref"] for row in labelled) == sorted(chosen)

    for box in lead.locator('input[name="tip_id"]').all():
        box.check()
    lead.select_option('form#bulk select[name="action"]', "assign")
    lead.select_option('form#bulk select[name="assignee_id"]', label="demo-caseworker")
    assert submit(lead, "form#bulk button[type=submit]").status == 200
    assert lead.locator(".error").count() == 0
    lead.goto(f"{served.staff_url}/tips?label={label_id}&limit=50")
    assert [row["assignee"] for row in rows(lead)] == ["demo-caseworker"] * BULK_SIZE

    # All or nothing: claiming the twenty again as the caseworker's lead fails on the first one
    # assigned elsewhere, and changes none of them.
    for box in lead.locator('input[name="tip_id"]').all():
        box.check()
    lead.select_option('form#bulk select[name="action"]', "claim")
    refused = submit(lead, "form#bulk button[type=submit]")
    assert refused.status == 409, lead.content()
    assert "Nothing was changed" in lead.locator(".error").inner_text()
    lead.goto(f"{served.staff_url}/tips?label={label_id}&limit=50")
    assert [row["assignee"] for row in rows(lead)] == ["demo-caseworker"] * BULK_SIZE

    # The caseworker finds the twenty under "Mine".
    with no_js_context_page(browser) as caseworker:
        caseworker.set_default_timeout(90_000)
        log_in_demo(caseworker, served, "caseworker")
        caseworker.goto(f"{served.staff_url}/tips?mine=true&limit=50")
        assert sorted(row["ref"] for row in rows(caseworker)) == sorted(chosen)
