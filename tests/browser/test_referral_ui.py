"""A verified case linked to a station, referred to a partner in real Chromium with JavaScript off:
the recipient's key added, the referral built with a redaction, previewed, approved by a lead and
downloaded; the downloaded bundle opens with the recipient's key alone, verifies against the
organisation's audit log, and holds nothing of what was redacted."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page
from sqlalchemy import select

from app.audit_log.signer import log_verifier
from app.auth.models import StaffAccount
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import load_server_secrets
from app.referrals.bundle import open_bundle
from app.referrals.keys import generate_recipient_key
from app.referrals.models import ReferralRecipient
from app.referrals.recipients import recipient_row_mac
from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_ui import demo_logins, log_in, no_js_context_page, one_time_code, submit
from tests.intake.test_followup_pages import gps_photo
from tests.support.screenshots import screenshot_dir

pytestmark = pytest.mark.serve

IDENTIFYING = "Officer Wang Lei"
NARRATIVE = f"{IDENTIFYING} of the Dublin station phoned my mother in Urumqi and told her I must return."


@contextmanager
def staff_api(served: ServedDemo, role: str) -> Iterator[httpx.Client]:
    login = demo_logins(served)[role]
    with httpx.Client(base_url=served.staff_url) as client:
        response = client.post(
            "/api/v1/auth/login",
            json={
                "username": login["username"],
                "password": login["password"],
                "otp": one_time_code(login["totp_secret"]),
            },
        )
        assert response.status_code == 200, response.text
        yield client


def log_in_as(page: Page, served: ServedDemo, role: str) -> None:
    """In the browser, with the next step's code: the API signed in with this step's."""
    login = demo_logins(served)[role]
    response = log_in(
        page, served, login["username"], login["password"], one_time_code(login["totp_secret"], 1)
    )
    assert response.status == 200, page.content()


def verified_case_linked_to_dublin(served: ServedDemo) -> str:
    """A report that may be passed on as written (with a photo), verified by two people, in a case
    whose link to the Dublin station a lead confirmed; the case id."""
    sent = httpx.post(
        f"{served.intake_url}/api/v1/tips",
        data={
            "narrative": NARRATIVE,
            "host_country": "IE",
            "host_city": "Dublin",
            "tactics": "family_pressure",
            "referral_consent": "authorities_and_partners",
            "referral_form": "as_sent",
        },
        files=[("files", ("photo.jpg", io.BytesIO(gps_photo()), "image/jpeg"))],
    )
    assert sent.status_code == 201, sent.text
    with staff_api(served, "caseworker") as caseworker, staff_api(served, "lead") as lead:
        queue = caseworker.get("/api/v1/tips", params={"limit": 200}).json()["items"]
        tip_id = next(
            item["id"]
            for item in queue
            if caseworker.get(f"/api/v1/tips/{item['id']}").json()["narrative"] == NARRATIVE
        )
        assert caseworker.post(f"/api/v1/tips/{tip_id}/claim").status_code == 200
        assert caseworker.post(f"/api/v1/tips/{tip_id}/verification").status_code == 200
        assert lead.post(f"/api/v1/tips/{tip_id}/verification/confirm").status_code == 200
        case = caseworker.post(
            "/api/v1/cases",
            json={"title": "Pressure through relatives", "tip_ids": [tip_id], "host_country": "IE"},
        )
        assert case.status_code == 201, case.text
        case_id: str = case.json()["id"]
        stations = caseworker.get("/api/v1/stations", params={"country": "IE"}).json()["items"]
        dublin = next(station for station in stations if station["city"] == "Dublin")
        link = caseworker.post(
            f"/api/v1/cases/{case_id}/stations",
            json={
                "station_id": dublin["id"],
                "relation": "contacted_via",
                "confidence": "high",
                "evidence": "The caller gave the Dublin office's number.",
            },
        )
        assert link.status_code == 201, link.text
        assert lead.post(f"/api/v1/cases/{case_id}/stations/{link.json()['id']}/confirm").status_code == 204
    return case_id


def confirmed_by_a_second_lead(served: ServedDemo) -> None:
    """The demo has one lead: a second lead's confirmation (the two-person rule is tested in
    tests/referrals) is written directly, in the demo admin's name."""
    settings = Settings(data_dir=served.data_dir)
    database = Database.from_settings(settings)
    integrity_key = load_server_secrets(settings.secrets_dir).key_integrity_key
    try:
        with database.transaction() as session:
            admin = session.scalars(select(StaffAccount).where(StaffAccount.username == "demo-admin")).one()
            for recipient in session.scalars(select(ReferralRecipient)):
                recipient.confirmed_by_id = admin.id
                recipient.confirmed_on = recipient.added_on
                recipient.row_mac = recipient_row_mac(integrity_key, recipient)
    finally:
        database.engine.dispose()


def shoot(page: Page, name: str) -> None:
    path = screenshot_dir() / f"staff-referral-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def test_a_verified_case_is_referred_redacted_approved_and_downloaded(
    browser: Browser, served_demo: ServedDemo, tmp_path: Path
) -> None:
    case_id = verified_case_linked_to_dublin(served_demo)
    private_key, public_text = generate_recipient_key("Partner in Dublin")

    with no_js_context_page(browser) as lead:
        log_in_as(lead, served_demo, "lead")
        lead.click("[data-nav=recipients]")
        lead.fill("#recipient-name", "Partner in Dublin")
        lead.fill("#recipient-contact", "+353 1 000 0000")
        lead.select_option("#recipient-kind", "partner")
        lead.fill("#recipient-key", public_text)
        assert submit(lead, "[data-action=add-recipient]").status == 200
        assert "waiting for a second lead" in lead.content()
        shoot(lead, "recipients")
        confirmed_by_a_second_lead(served_demo)

        with no_js_context_page(browser) as caseworker:
            log_in_as(caseworker, served_demo, "caseworker")
            caseworker.goto(f"{served_demo.staff_url}/cases/{case_id}")
            assert submit(caseworker, "[data-action=refer]").status == 200
            caseworker.check('input[name="recipient"]')
            caseworker.check('input[name="report"]')
            for field in ("narrative", "messages"):
                caseworker.check(f'input[name$=".field"][value="{field}"]')
            caseworker.check('input[name$=".file"]')
            assert caseworker.is_checked('input[name="station_link"]')
            caseworker.fill("#redactions", IDENTIFYING)
            caseworker.fill("#cover_note", "Three families; please call before contacting them.")
            shoot(caseworker, "build")
            preview = submit(caseworker, "[data-action=propose-referral]")
            assert preview.status == 200
            text = caseworker.locator("main").inner_text()
            assert "[REDACTED] of the Dublin station phoned my mother" in text
            assert IDENTIFYING not in text
            assert caseworker.locator("[data-action=approve-referral]").count() == 0
            referral_url = caseworker.url
            shoot(caseworker, "preview")

        lead.goto(referral_url)
        assert submit(lead, "[data-action=approve-referral]").status == 200
        assert lead.locator('[data-status="approved"]').count() == 1
        with lead.expect_download() as download_info:
            lead.click("[data-action=download-bundle]")
        bundle = tmp_path / "referral.daylight-referral"
        download_info.value.save_as(bundle)
        lead.reload()
        assert lead.locator("[data-bundle-sha256]").count() == 1
        shoot(lead, "approved")

    raw = bundle.read_bytes()
    assert IDENTIFYING.encode() not in raw
    settings = Settings(data_dir=served_demo.data_dir)
    log_key = log_verifier(settings, load_server_secrets(settings.secrets_dir))
    report = open_bundle(bundle, private_key, tmp_path / "opened", log_key=log_key)
    assert report.ok, report.problems
    opened = [path.read_bytes() for path in (tmp_path / "opened").rglob("*") if path.is_file()]
    assert any(
        b"[REDACTED] of the Dublin station phoned my mother in Urumqi" in content for content in opened
    )
    assert not any(IDENTIFYING.encode() in content for content in opened)
    manifest = json.loads((tmp_path / "opened" / "manifest.json").read_text())
    assert manifest["station_links"][0]["station"].startswith("Dublin")
    assert any(item["kind"] == "attachment" for item in manifest["items"])
