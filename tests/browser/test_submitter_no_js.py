"""The submitter's whole path as Tor Browser at "Safest" takes it: JavaScript off, in every language.

From the first page, through each step, to the receipt; a caseworker's question
(posted through the service layer, as the staff UI does); back with the receipt
to read it, answer and add a file; and the refusals a submitter can meet. Each
step is photographed into docs/screenshots/ when `make screenshots` asks.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2 as httpx
import pikepdf
import pytest
from PIL import Image
from playwright.sync_api import Page, Response

from app.intake import service
from app.intake.models import MessageAuthor, TipStatus
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import load_server_secrets
from tests.browser.conftest import ServedDemo
from tests.browser.test_staff_ui import demo_logins, one_time_code
from tests.intake.test_document_cleaning import CAMERA, CANARY, identifying_pdf, images_of
from tests.intake.test_document_cleaning import gps_photo as document_photo
from tests.support.screenshots import screenshot_dir

pytestmark = pytest.mark.serve

RECEIPT_PATTERN = re.compile(r"^([0-9A-Z]{4}-){5}[0-9A-Z]{4}$")
LANGUAGES = ["en", "zh-Hans", "zh-Hant", "ug", "bo"]
DIRECTION = {"en": "ltr", "zh-Hans": "ltr", "zh-Hant": "ltr", "ug": "rtl", "bo": "ltr"}


def stored_blob_count(served: ServedDemo) -> int:
    blobs_dir = served.data_dir / "blobs"  # created with the first attachment
    return len(list(blobs_dir.iterdir())) if blobs_dir.exists() else 0


def gps_photo() -> bytes:
    """A phone photo: it says where it was taken and which camera took it."""
    exif = Image.Exif()
    exif[0x010F] = "CanaryPhone"  # Make
    exif[0x0110] = "CANARY-MODEL-7"  # Model
    exif.get_ifd(0x8825).update({1: "N", 2: (53.0, 20.0, 31.0), 3: "W", 4: (6.0, 15.0, 37.0)})
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (30, 90, 160)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def shoot(page: Page, lang: str, name: str) -> None:
    path = screenshot_dir() / f"intake-{lang}-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def click_and_wait(page: Page, selector: str) -> Response:
    with page.expect_navigation() as navigation:
        page.click(selector)
    response = navigation.value
    assert response is not None
    return response


def next_step(page: Page, expected_step: str) -> None:
    response = click_and_wait(page, 'button[name="go"][value="next"]')
    assert response.status == 200, page.content()
    assert page.locator('input[name="step"]').get_attribute("value") == expected_step


def fill_report(page: Page, served: ServedDemo, lang: str, narrative: str) -> None:
    """Every step of the form, as a submitter fills it, photographed along the way."""
    page.goto(f"{served.intake_url}/")
    if lang != "en":
        with page.expect_navigation():
            page.click(f'nav.languages a[hreflang="{lang}"]')
    assert page.locator("html").get_attribute("lang") == lang
    assert page.locator("html").get_attribute("dir") == DIRECTION[lang]
    assert page.locator("script").count() == 0
    shoot(page, lang, "1-what")
    page.check('input[name="tactics"][value="family_pressure"]')
    page.check('input[name="tactics"][value="station_contact"]')
    next_step(page, "where")

    page.select_option("#host_country", "IE")
    page.fill("#host_city", "Dublin")
    page.select_option("#incident_month", "3")
    page.select_option("#incident_year", "2025")
    shoot(page, lang, "2-where")
    next_step(page, "who")

    page.check('input[name="perpetrators"][value="service_station"]')
    shoot(page, lang, "3-who")
    next_step(page, "story")

    page.fill("#narrative", narrative)
    page.check('input[name="urgent"]')
    shoot(page, lang, "4-story")
    next_step(page, "contact")

    assert page.locator(".emergency").is_visible()  # "someone is in immediate danger" was ticked
    page.check('input[name="referral_consent"][value="partners_only"]')
    page.check('input[name="referral_form"][value="without_identifying_details"]')
    shoot(page, lang, "5-contact")
    next_step(page, "review")
    assert "Dublin" in (page.locator(".review").text_content() or "")
    assert narrative in (page.locator(".review").text_content() or "")


@contextmanager
def staff_api(served: ServedDemo) -> Iterator[httpx.Client]:
    """The demo caseworker (who holds the intake key), signed in to the staff API."""
    caseworker = demo_logins(served)["caseworker"]
    with httpx.Client(base_url=served.staff_url) as client:
        response = client.post(
            "/api/v1/auth/login",
            json={
                "username": caseworker["username"],
                "password": caseworker["password"],
                "otp": one_time_code(caseworker["totp_secret"]),
            },
        )
        assert response.status_code == 200, response.text
        yield client


def ask_the_submitter(served: ServedDemo, receipt: str, question: str) -> None:
    """A caseworker's question, through the service layer the staff UI uses."""
    settings = Settings(data_dir=served.data_dir)
    database = Database.from_settings(settings)
    server_secrets = load_server_secrets(settings.secrets_dir)
    try:
        with database.transaction() as session:
            holder = service.tip_for_receipt(
                session,
                receipt,
                receipt_pepper=server_secrets.receipt_pepper,
                key_integrity_key=server_secrets.key_integrity_key,
            )
            assert holder is not None
            service.add_message(
                session, holder.tip, question, author=MessageAuthor.STAFF, server_secrets=server_secrets
            )
            holder.tip.status = TipStatus.NEEDS_INFO
    finally:
        database.engine.dispose()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_report_with_a_photo_then_a_reply_read_and_answered_without_javascript(
    no_js_page: Page, served_demo: ServedDemo, tmp_path: Path, lang: str
) -> None:
    page = no_js_page
    narrative = f"Two men from the service station came to my shop. {secrets.token_hex(4)}"
    fill_report(page, served_demo, lang, narrative)
    photo = tmp_path / "IMG_2231 my street.jpg"
    photo.write_bytes(gps_photo())
    letter = tmp_path / "letter from the station.pdf"
    letter.write_bytes(identifying_pdf(document_photo()))
    page.set_input_files("#files", [str(photo), str(letter)])
    shoot(page, lang, "6-review")
    blobs_before = stored_blob_count(served_demo)

    response = click_and_wait(page, 'form#report-form button.primary[type="submit"]')
    assert response.status == 201  # the report is created; the body is the receipt page
    assert page.locator("html").get_attribute("dir") == DIRECTION[lang]
    receipt = (page.locator(".receipt").text_content() or "").strip()
    assert RECEIPT_PATTERN.match(receipt), receipt
    assert page.locator(".emergency").is_visible()
    assert page.context.cookies() == []  # no cookie, at any step
    shoot(page, lang, "7-receipt")
    assert stored_blob_count(served_demo) == blobs_before + 2

    # A duress code, taken from the receipt page, to give up instead of the receipt.
    assert click_and_wait(page, 'form[action^="/followup/duress"] button').status == 201
    duress_code = (page.locator(".receipt").text_content() or "").strip()
    assert RECEIPT_PATTERN.match(duress_code), duress_code
    assert duress_code != receipt
    assert page.locator("html").get_attribute("lang") == lang
    shoot(page, lang, "7b-duress-code")
    assert click_and_wait(page, "#back-form button").status == 200
    assert page.locator(".status-new").count() == 1

    # The photo reached staff without where it was taken or which camera took it.
    with staff_api(served_demo) as staff:
        queue = staff.get("/api/v1/tips").json()["items"]
        for item in queue:
            tip = staff.get(f"/api/v1/tips/{item['id']}").json()
            if tip["narrative"] == narrative:
                break
        else:
            raise AssertionError("the report is not in the caseworker's queue")
        assert (tip["host_city"], tip["urgent"], tip["perpetrators"]) == ("Dublin", True, ["service_station"])
        assert tip["language"] == lang
        assert (tip["referral_consent"], tip["referral_form"]) == (
            "partners_only",
            "without_identifying_details",
        )
        assert all(attachment["metadata_removed"] for attachment in tip["attachments"])
        stored = {
            attachment["content_type"]: staff.get(
                f"/api/v1/tips/{tip['id']}/attachments/{attachment['id']}"
            ).content
            for attachment in tip["attachments"]
        }
    assert set(stored) == {"image/jpeg", "application/pdf"}
    assert b"CanaryPhone" not in stored["image/jpeg"]
    assert b"CANARY-MODEL" not in stored["image/jpeg"]
    assert not Image.open(io.BytesIO(stored["image/jpeg"])).getexif()
    assert Image.open(io.BytesIO(stored["image/jpeg"])).size == (320, 240)
    # The letter keeps its pages and its photo, but not who wrote it or where the photo was taken.
    assert CANARY.encode() not in stored["application/pdf"]
    assert CAMERA.encode() not in stored["application/pdf"]
    with pikepdf.open(io.BytesIO(stored["application/pdf"])) as pdf:
        assert len(pdf.pages) == 2
        pictures = images_of(pdf)
        assert pictures
        assert not any(Image.open(io.BytesIO(picture)).getexif() for picture in pictures)

    # Later: a caseworker asks; the submitter comes back with the receipt, typed by hand.
    ask_the_submitter(served_demo, receipt, "Which month did they first come?")
    page.goto(f"{served_demo.intake_url}/followup?lang={lang}")
    page.fill("#receipt", receipt.lower().replace("-", " "))
    shoot(page, lang, "8-followup-receipt")
    assert click_and_wait(page, 'button[type="submit"].primary').status == 200
    assert "Which month did they first come?" in (page.locator(".messages").text_content() or "")
    assert page.locator(".status-needs_info").count() == 1
    shoot(page, lang, "9-followup-question")

    page.fill("#body", "In March, and again in May.")
    assert click_and_wait(page, 'form[action^="/followup/reply"] button[type="submit"]').status == 201
    assert page.locator(".status-in_review").count() == 1
    assert page.locator(".notice").is_visible()
    shoot(page, lang, "10-followup-answered")

    page.set_input_files(
        "#files",
        files=[
            {"name": "letter.txt", "mimeType": "text/plain", "buffer": b"the letter they left, transcribed"}
        ],
    )
    assert click_and_wait(page, 'form[action^="/followup/files"] button[type="submit"]').status == 201
    assert stored_blob_count(served_demo) == blobs_before + 3

    # Whoever forces the duress code out of the submitter sees a report just received, with no
    # replies: nothing of the question, the answer or the files.
    page.goto(f"{served_demo.intake_url}/followup?lang={lang}")
    page.fill("#receipt", duress_code)
    assert click_and_wait(page, 'button[type="submit"].primary').status == 200
    assert page.locator(".status-new").count() == 1
    assert page.locator(".messages").count() == 0
    assert "Which month did they first come?" not in page.content()
    shoot(page, lang, "13-duress-page")

    # A dead end met on the way (an address opened by hand): a page in the same language, with the
    # quick exit and the way back to the form, not an error code.
    refused = page.goto(f"{served_demo.intake_url}/report/step?lang={lang}")
    assert refused is not None
    assert refused.status == 405
    assert page.locator("html").get_attribute("lang") == lang
    assert page.locator("html").get_attribute("dir") == DIRECTION[lang]
    assert page.locator("a.quick-exit").is_visible()
    assert page.locator(f'main a[href="/?lang={lang}"]').is_visible()
    shoot(page, lang, "12-error-page")


def test_deleting_a_report_in_the_browser_asks_then_shreds_it(
    no_js_page: Page, served_demo: ServedDemo
) -> None:
    page = no_js_page
    response = httpx.post(
        f"{served_demo.intake_url}/api/v1/tips",
        files=[("files", ("a.txt", b"evidence", "text/plain"))],
        data={"narrative": "To be deleted."},
    )
    assert response.status_code == 201
    receipt = response.json()["receipt"]
    blobs_before = stored_blob_count(served_demo)
    page.goto(f"{served_demo.intake_url}/followup?lang=ug")
    page.fill("#receipt", receipt)
    click_and_wait(page, 'button[type="submit"].primary')
    click_and_wait(page, 'form[action^="/followup/delete"] button.danger')
    assert page.locator('input[name="confirm"]').count() == 1
    shoot(page, "ug", "11-delete-confirm")
    assert click_and_wait(page, "button.danger").status == 200
    assert page.locator("html").get_attribute("dir") == "rtl"
    assert stored_blob_count(served_demo) == blobs_before - 1
    answer = httpx.post(f"{served_demo.intake_url}/api/v1/followup", json={"receipt": receipt})
    assert answer.status_code == 401


def test_too_many_files_are_refused_with_the_answers_kept_and_nothing_stored(
    no_js_page: Page, served_demo: ServedDemo, tmp_path: Path
) -> None:
    page = no_js_page
    narrative = "They asked my sister where I work."
    fill_report(page, served_demo, "en", narrative)
    files = []
    for number in range(Settings.model_fields["max_files_per_tip"].default + 1):
        path = tmp_path / f"note-{number}.txt"
        path.write_text(f"note {number}")
        files.append(str(path))
    page.set_input_files("#files", files)
    blobs_before = stored_blob_count(served_demo)
    response = click_and_wait(page, 'form#report-form button.primary[type="submit"]')
    assert response.status == 413
    assert page.locator(".errors[role=alert]").is_visible()
    assert page.locator('input[name="step"]').get_attribute("value") == "review"
    assert narrative in (page.locator(".review").text_content() or "")
    assert page.locator(".receipt").count() == 0
    assert stored_blob_count(served_demo) == blobs_before
    shoot(page, "en", "refused-too-many-files")


def test_an_invalid_answer_shows_the_errors_and_keeps_what_was_typed(
    no_js_page: Page, served_demo: ServedDemo
) -> None:
    page = no_js_page
    page.goto(f"{served_demo.intake_url}/?lang=ug")
    page.check('input[name="tactics"][value="family_pressure"]')
    next_step(page, "where")
    next_step(page, "who")
    next_step(page, "story")
    page.fill("#narrative", "   ")
    response = click_and_wait(page, 'button[name="go"][value="next"]')
    assert response.status == 422
    assert page.locator(".errors[role=alert]").is_visible()
    assert page.locator("#narrative[aria-invalid=true]").count() == 1
    # Without script, the page itself moves the reader to the summary (the form posts to
    # "#errors"), and the summary links to the field.
    assert page.url.endswith("#errors")
    box = page.locator("#errors").bounding_box()
    assert box is not None
    assert 0 <= box["y"] < (page.viewport_size or {"height": 720})["height"] / 2
    assert page.locator('#errors a[href="#narrative"]').count() == 1
    click_and_wait(page, 'button[name="go"][value="back"]')
    click_and_wait(page, 'button[name="go"][value="back"]')
    click_and_wait(page, 'button[name="go"][value="back"]')
    assert page.is_checked('input[name="tactics"][value="family_pressure"]')
