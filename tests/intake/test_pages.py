"""The submitter's pages: a guided form of plain HTML steps, no script, no cookie, nothing lost."""

from __future__ import annotations

import json
import re
import uuid
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.entrypoints.apps import create_intake_app
from app.intake.models import TIP_ANSWERS, TIP_DATA_KEY, TIP_NARRATIVE, Tip, TipAttachment
from app.intake.routes_web import _countries
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.taxonomy import Language
from tests.conftest import Organisation

FormFields = list[tuple[str, str]]
ANSWERS: dict[str, Any] = {
    "what": [("tactics", "family_pressure"), ("tactics", "station_contact")],
    "where": [
        ("host_country", "IE"),
        ("host_city", "Dublin"),
        ("incident_month", "3"),
        ("incident_year", "2025"),
        ("ongoing", "true"),
    ],
    "who": [("perpetrators", "service_station"), ("perpetrators", "police")],
    "story": [("narrative", "They phoned my mother & said <come home>."), ("urgent", "true")],
    "contact": [
        ("contact_preference", "receipt_only"),
        ("referral_consent", "partners_only"),
        ("referral_form", "as_sent"),
    ],
}


def hidden_fields(html: str) -> FormFields:
    """The (name, value) pairs of a page's hidden inputs, as a browser would post them."""
    return [
        (unescape(name), unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    ]


def post_step(client: TestClient, fields: FormFields, lang: str = "en") -> Any:
    return client.post(f"/report/step?lang={lang}", data=_as_form(fields))


def _as_form(fields: FormFields) -> dict[str, list[str]]:
    form: dict[str, list[str]] = {}
    for name, value in fields:
        form.setdefault(name, []).append(value)
    return form


def walk_to_review(client: TestClient, lang: str = "en") -> str:
    """Answer every step as a browser does: the page's hidden fields plus this step's answers."""
    page = client.get(f"/?lang={lang}").text
    for step in ("what", "where", "who", "story", "contact"):
        assert f'name="step" value="{step}"' in page
        response = post_step(client, [*hidden_fields(page), *ANSWERS[step], ("go", "next")], lang)
        assert response.status_code == 200, response.text
        page = response.text
    assert 'name="step" value="review"' in page
    return page


def tip_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Tip)) or 0


def test_the_form_page_is_the_contract_page(intake_client: TestClient) -> None:
    response = intake_client.get("/")
    assert response.status_code == 200
    html = response.text
    assert "<script" not in html.lower()
    assert '<form method="post"' in html
    assert {"en", "zh-Hans", "zh-Hant", "ug", "bo"} <= set(re.findall(r'hreflang="([^"]+)"', html))
    # Every URL the page loads or links is our own: no CDN, no font, no tracker.
    for url in re.findall(r'(?:src|href|action)="([^"]+)"', html):
        assert url.startswith(("/", "?", "#")) or url.startswith("https://en.wikipedia.org/"), url
    assert 'class="quick-exit"' in html
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "style-src 'self'" in csp
    assert "form-action 'self'" in csp
    assert "script-src" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers
    assert "server" not in response.headers


def test_the_uyghur_page_is_right_to_left_and_translated(intake_client: TestClient) -> None:
    english = intake_client.get("/").text
    html = intake_client.get("/?lang=ug").text
    assert '<html lang="ug" dir="rtl">' in html
    assert "Leave this site quickly" in english
    assert "Leave this site quickly" not in html
    assert 'name="language" value="ug"' in html


def test_every_step_keeps_every_answer_and_the_review_shows_them(
    intake_client: TestClient, organisation: Organisation
) -> None:
    review = walk_to_review(intake_client)
    carried = hidden_fields(review)
    for step in ANSWERS.values():
        for pair in step:
            assert pair in carried, pair
    assert "Dublin" in review
    assert "Ireland" in review
    assert "They phoned my mother &amp; said &lt;come home&gt;." in review  # kept and escaped
    assert "If someone is in immediate danger" in review  # the urgent answer shows the guidance
    assert 'enctype="multipart/form-data"' in review
    assert 'type="file" name="files"' in review


def test_back_keeps_answers_and_skips_validation(intake_client: TestClient) -> None:
    page = intake_client.get("/").text
    where = post_step(intake_client, [*hidden_fields(page), *ANSWERS["what"], ("go", "next")]).text
    back = post_step(
        intake_client,
        [
            *hidden_fields(where),
            ("host_city", "Typed, not yet checked"),
            ("host_country", "ZZ"),
            ("go", "back"),
        ],
    )
    assert back.status_code == 200
    assert 'name="step" value="what"' in back.text
    assert re.search(r'value="family_pressure" checked', back.text)
    # What was typed on the step left with "back" is carried too.
    assert ("host_city", "Typed, not yet checked") in hidden_fields(back.text)


def test_a_step_with_a_wrong_answer_is_shown_again_with_everything_typed(intake_client: TestClient) -> None:
    page = walk_to_review(intake_client)
    story = post_step(intake_client, [*hidden_fields(page), ("go", "edit:story")]).text
    assert 'name="step" value="story"' in story
    kept = [(name, value) for name, value in hidden_fields(story) if name != "narrative"]
    refused = post_step(intake_client, [*kept, ("narrative", "   "), ("go", "next")])
    assert refused.status_code == 422
    assert 'name="step" value="story"' in refused.text
    assert "Please tell us what happened" in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert ("host_city", "Dublin") in hidden_fields(refused.text)


def test_every_question_but_the_account_may_be_left_unsaid(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    page = intake_client.get("/").text
    for step, answers in (
        ("what", [("tactics", "prefer_not_to_say")]),
        ("where", [("host_country", ""), ("host_city", ""), ("incident_month", ""), ("incident_year", "")]),
        ("who", [("perpetrators", "prefer_not_to_say")]),
        ("story", [("narrative", "Only this.")]),
        ("contact", [("contact_preference", "receipt_only"), ("referral_consent", "")]),
    ):
        response = post_step(intake_client, [*hidden_fields(page), *answers, ("go", "next")])
        assert response.status_code == 200, (step, response.text)
        page = response.text
    # What, where, when, who, station and danger unsaid; sharing answered "prefer not to say".
    assert page.count('class="not-said"') == 6
    assert "Prefer not to say (we treat this as no)" in page
    sent = intake_client.post("/report", data=_as_form(hidden_fields(page)))
    assert sent.status_code == 201
    assert tip_count(db_session) == 1


def test_the_whole_form_sends_a_report_with_every_answer_sealed(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    review = walk_to_review(intake_client)
    response = intake_client.post(
        "/report?lang=en",
        data=_as_form(hidden_fields(review)),
        files=[("files", ("note.txt", b"a transcribed letter", "text/plain"))],
    )
    assert response.status_code == 201
    receipt = re.search(r'<p class="receipt"[^>]*>(.*?)</p>', response.text, re.S)
    assert receipt is not None
    groups = re.findall(r'<span class="receipt-group">([0-9A-Z]{4})</span>', receipt.group(1))
    assert len(groups) == 6
    assert "If someone is in immediate danger" in response.text
    tip = db_session.scalars(select(Tip)).one()
    assert tip.urgent is True
    data_key = TIP_DATA_KEY.open(
        organisation.intake.private,
        tip.sealed_data_key,
        row_id=str(tip.id),
        key_version=tip.intake_key_version,
    )
    answers = json.loads(
        TIP_ANSWERS.open(
            data_key, tip.answers_encrypted, row_id=str(tip.id), key_version=tip.intake_key_version
        )
    )
    assert answers == {
        "language": "en",
        "tactics": ["family_pressure", "station_contact"],
        "host_country": "IE",
        "host_city": "Dublin",
        "incident_month": 3,
        "incident_year": 2025,
        "ongoing": True,
        "perpetrators": ["service_station", "police"],
        "station_id": None,
        "contact_preference": "receipt_only",
        "contact_details": None,
        "referral_consent": "partners_only",
        "referral_form": "as_sent",
    }
    narrative = TIP_NARRATIVE.open(
        data_key, tip.narrative_encrypted, row_id=str(tip.id), key_version=tip.intake_key_version
    )
    assert narrative == b"They phoned my mother & said <come home>."
    assert len(tip.attachments) == 1


def test_contact_details_typed_then_taken_back_are_not_kept(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    review = walk_to_review(intake_client)
    fields = [pair for pair in hidden_fields(review) if pair[0] != "contact_preference"]
    fields += [("contact_preference", "receipt_only"), ("contact_details", "signal +31 6 1234 5678")]
    assert intake_client.post("/report", data=_as_form(fields)).status_code == 201
    tip = db_session.scalars(select(Tip)).one()
    data_key = TIP_DATA_KEY.open(
        organisation.intake.private,
        tip.sealed_data_key,
        row_id=str(tip.id),
        key_version=tip.intake_key_version,
    )
    answers = json.loads(
        TIP_ANSWERS.open(
            data_key, tip.answers_encrypted, row_id=str(tip.id), key_version=tip.intake_key_version
        )
    )
    assert answers["contact_details"] is None


def test_another_way_to_be_reached_needs_the_details(intake_client: TestClient) -> None:
    page = walk_to_review(intake_client)
    contact = post_step(intake_client, [*hidden_fields(page), ("go", "edit:contact")]).text
    kept = list(hidden_fields(contact))
    refused = post_step(
        intake_client,
        [*kept, ("contact_preference", "other_channel"), ("contact_details", ""), ("go", "next")],
    )
    assert refused.status_code == 422
    assert "Tell us how to reach you" in refused.text


def test_a_refused_final_post_returns_to_the_step_to_fix_with_everything_kept(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    review = walk_to_review(intake_client)
    fields = [pair for pair in hidden_fields(review) if pair[0] != "host_country"] + [("host_country", "ZZ")]
    response = intake_client.post("/report", data=_as_form(fields))
    assert response.status_code == 422
    assert 'name="step" value="where"' in response.text
    assert '<a href="#host_country">Choose a country from the list.</a>' in response.text
    assert 'action="/report/step?lang=en#errors"' in response.text
    assert ("narrative", "They phoned my mother & said <come home>.") in hidden_fields(response.text)
    assert tip_count(db_session) == 0


def test_too_many_files_are_refused_on_the_review_page_with_the_answers_kept(
    intake_client: TestClient, organisation: Organisation, db_session: Session, settings: Settings
) -> None:
    review = walk_to_review(intake_client)
    files = [
        ("files", (f"f{number}.txt", b"x", "text/plain")) for number in range(settings.max_files_per_tip + 1)
    ]
    response = intake_client.post("/report", data=_as_form(hidden_fields(review)), files=files)
    assert response.status_code == 413
    assert "Too many files" in response.text
    assert 'name="step" value="review"' in response.text
    assert ("host_city", "Dublin") in hidden_fields(response.text)
    assert tip_count(db_session) == 0
    assert db_session.scalar(select(func.count()).select_from(TipAttachment)) == 0
    assert not settings.blobs_dir.exists() or list(settings.blobs_dir.iterdir()) == []


def test_an_oversized_file_is_refused_with_a_clear_page_and_nothing_stored(
    organisation: Organisation, db_session: Session, settings: Settings, database: Database
) -> None:
    small = settings.model_copy(update={"max_file_bytes": 1000})
    with TestClient(create_intake_app(small, database=database), base_url="https://testserver") as client:
        review = walk_to_review(client)
        response = client.post(
            "/report",
            data=_as_form(hidden_fields(review)),
            files=[("files", ("big.bin", b"y" * 1001, "application/octet-stream"))],
        )
    assert response.status_code == 413
    assert "larger than this service accepts" in response.text
    assert ("host_city", "Dublin") in hidden_fields(response.text)
    assert tip_count(db_session) == 0
    assert not settings.blobs_dir.exists() or list(settings.blobs_dir.iterdir()) == []


def test_unknown_fields_are_neither_echoed_nor_stored(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    page = intake_client.get("/").text
    response = post_step(
        intake_client,
        [*hidden_fields(page), *ANSWERS["what"], ("planted-field", "PLANTED-VALUE"), ("go", "next")],
    )
    assert response.status_code == 200
    assert "PLANTED" not in response.text
    assert "planted-field" not in response.text


def test_a_form_posted_from_another_site_is_refused_and_echoes_nothing(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    lure = "Email your receipt to evil@example.org"
    for path in ("/report", "/report/step"):
        for headers in ({"sec-fetch-site": "cross-site"}, {"origin": "https://evil.example"}):
            response = intake_client.post(
                path, headers=headers, data={"narrative": lure, "host_city": lure, "step": "story"}
            )
            assert response.status_code == 403
            assert "text/html" in response.headers["content-type"]
            assert "evil" not in response.text
    assert tip_count(db_session) == 0


def test_the_form_refuses_json(intake_client: TestClient, organisation: Organisation) -> None:
    response = intake_client.post("/report", json={"narrative": "x"})
    assert response.status_code == 415
    assert "text/html" in response.headers["content-type"]


def test_a_language_change_mid_form_keeps_the_answers(intake_client: TestClient) -> None:
    page = intake_client.get("/").text
    where = post_step(intake_client, [*hidden_fields(page), *ANSWERS["what"], ("go", "next")]).text
    assert 'formaction="/report/step?lang=zh-Hant"' in where
    switched = post_step(
        intake_client, [*hidden_fields(where), ("host_city", "Dublin"), ("go", "stay")], lang="zh-Hant"
    )
    assert switched.status_code == 200
    assert '<html lang="zh-Hant" dir="ltr">' in switched.text
    assert 'name="step" value="where"' in switched.text
    assert 'value="Dublin"' in switched.text
    assert ("tactics", "station_contact") in hidden_fields(switched.text)


@pytest.mark.parametrize("lang", ["en", "zh-Hans", "zh-Hant", "ug", "bo"])
def test_every_page_is_small_enough_for_a_slow_tor_circuit(intake_client: TestClient, lang: str) -> None:
    css = intake_client.get("/static/daylight.css")
    assert css.status_code == 200
    review = walk_to_review(intake_client, lang)
    pages = [intake_client.get(f"{path}?lang={lang}").text for path in ("/", "/followup", "/safety")]
    for html in [*pages, review]:
        assert len(html.encode()) + len(css.content) < 100_000


def test_a_crafted_month_on_a_refused_send_shows_the_review_page_not_an_error(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    for month in ("\u00b2", "9" * 5000):
        response = intake_client.post(
            "/report",
            data={"narrative": "x", "incident_month": month, "bogus": "1"},
            files=[("files", ("a.txt", b"x", "text/plain"))],
        )
        assert response.status_code == 422
        assert "text/html" in response.headers["content-type"]
    assert tip_count(db_session) == 0


def test_a_tiny_file_that_starts_like_a_photo_is_stored_as_sent(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    review = walk_to_review(intake_client)
    response = intake_client.post(
        "/report",
        data=_as_form(hidden_fields(review)),
        files=[("files", ("x.jpg", b"\xff\xd8\xff\x00abc", "image/jpeg"))],
    )
    assert response.status_code == 201
    assert tip_count(db_session) == 1


def test_the_who_step_offers_the_registrys_stations_and_nothing_else(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    from app.audit_log import events as audit_events
    from app.entrypoints.demo import SEED_FILE
    from app.stations import registry
    from app.stations.models import Station

    registry.apply(db_session, registry.parse(SEED_FILE.read_bytes(), "csv"), audit_events.SYSTEM)
    db_session.commit()
    dublin = db_session.scalars(select(Station).where(Station.city == "Dublin")).one()
    page = intake_client.get("/").text
    who = post_step(intake_client, [*hidden_fields(page), *ANSWERS["what"], ("go", "next")])
    who = post_step(intake_client, [*hidden_fields(who.text), *ANSWERS["where"], ("go", "next")])
    assert f'<option value="{dublin.id}">Dublin, Ireland</option>' in who.text
    assert "Fuzhou" not in who.text  # the bureau and anything about cases stay with staff
    review = walk_to_review(intake_client)
    fields = [*hidden_fields(review), ("station_id", str(dublin.id))]
    sent = intake_client.post("/report", data=_as_form(fields))
    assert sent.status_code == 201
    unknown = [*hidden_fields(review), ("station_id", str(uuid.uuid4()))]
    refused = intake_client.post("/report", data=_as_form(unknown))
    assert refused.status_code == 422
    assert "Choose a station from the list." in refused.text


@pytest.mark.parametrize("lang", ["en", "zh-Hans", "zh-Hant", "ug", "bo"])
def test_the_safety_page_speaks_to_this_mission_in_every_language(
    intake_client: TestClient, lang: str
) -> None:
    html = intake_client.get(f"/safety?lang={lang}").text
    for section in ("family", "phones", "censored", "receipt"):
        assert f'<h2 id="{section}">' in html
    assert "bridges@torproject.org" in html
    if lang != "en":
        # Translated, not the English fallback.
        assert "When the pressure comes through your family" not in html
        assert "If someone forces you to give it up" not in html
        assert "GetTor" in html


@pytest.mark.parametrize("lang", ["en", "zh-Hans", "zh-Hant", "ug", "bo"])
def test_every_country_has_a_name_in_every_language(lang: str) -> None:
    names = dict(_countries(Language(lang)))
    assert [code for code, name in names.items() if name == code] == []
    assert names["TW"] != "TW"
