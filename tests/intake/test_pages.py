"""The submitter's pages: the form works as plain HTML, with no script and no third-party asset."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.intake.models import Tip
from tests.conftest import Organisation


def test_the_form_page_is_the_contract_page(intake_client: TestClient) -> None:
    response = intake_client.get("/")
    assert response.status_code == 200
    html = response.text
    assert "<script" not in html.lower()
    assert '<form method="post"' in html
    assert {"en", "zh-Hans", "zh-Hant", "ug"} <= set(re.findall(r'hreflang="([^"]+)"', html))
    # Every URL the page loads is our own: no CDN, no font, no tracker.
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert url.startswith(("/", "?", "#")) or url.startswith("https://en.wikipedia.org/"), url
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert "set-cookie" not in response.headers


def test_the_uyghur_page_is_right_to_left(intake_client: TestClient) -> None:
    html = intake_client.get("/?lang=ug").text
    assert '<html lang="ug" dir="rtl">' in html


def test_the_form_posts_without_javascript_and_shows_the_receipt(
        intake_client: TestClient, organisation: Organisation, db_session: Session) -> None:
    response = intake_client.post("/report", data={"narrative": "Posted by a plain form.",
                                                   "tactics": ["surveillance"], "host_country": "",
                                                   "host_city": "", "language": "en"})
    assert response.status_code == 201
    assert re.search(r'<p class="receipt"[^>]*>([0-9A-Z]{4}-){5}[0-9A-Z]{4}</p>', response.text)
    assert db_session.scalar(select(func.count()).select_from(Tip)) == 1


def test_a_rejected_form_keeps_what_was_typed(
        intake_client: TestClient, organisation: Organisation, db_session: Session) -> None:
    response = intake_client.post("/report", data={"narrative": "Keep <these> words.",
                                                   "host_country": "ZZ", "tactics": ["physical"]})
    assert response.status_code == 422
    assert "Keep &lt;these&gt; words." in response.text  # kept, and escaped
    assert re.search(r'value="physical" checked', response.text)
    assert db_session.scalar(select(func.count()).select_from(Tip)) == 0


def test_the_form_also_posts_as_multipart_with_a_file(
        intake_client: TestClient, organisation: Organisation, db_session: Session) -> None:
    response = intake_client.post("/report", data={"narrative": "With a photo."},
                                  files=[("files", ("p.jpg", b"\xff\xd8jpeg", "image/jpeg"))])
    assert response.status_code == 201
    assert db_session.scalar(select(func.count()).select_from(Tip)) == 1


def test_the_form_refuses_json(intake_client: TestClient, organisation: Organisation) -> None:
    assert intake_client.post("/report", json={"narrative": "x"}).status_code == 415


def test_a_form_posted_from_another_site_is_refused_and_echoes_nothing(
        intake_client: TestClient, organisation: Organisation, db_session: Session) -> None:
    lure = "Email your receipt to evil@example.org"
    for headers in ({"sec-fetch-site": "cross-site"}, {"origin": "https://evil.example"}):
        response = intake_client.post("/report", headers=headers,
                                      data={"narrative": lure, lure: "x", "host_country": "ZZ"})
        assert response.status_code == 403
        assert "text/html" in response.headers["content-type"]
        assert "evil" not in response.text
    assert db_session.scalar(select(func.count()).select_from(Tip)) == 0


def test_unknown_field_names_are_not_echoed_onto_the_page(
        intake_client: TestClient, organisation: Organisation) -> None:
    response = intake_client.post("/report", headers={"sec-fetch-site": "same-origin"},
                                  data={"narrative": "x", "Your report was flagged": "y"})
    assert response.status_code == 422
    assert "flagged" not in response.text
    assert "does not know" in response.text


def test_refusals_other_than_validation_are_pages_too(
        intake_client: TestClient, organisation: Organisation) -> None:
    huge = {"narrative": "x" * (1024 * 1024 + 1)}
    response = intake_client.post("/report", data=huge)  # urlencoded, over the form bound
    assert response.status_code == 413
    assert "text/html" in response.headers["content-type"]
    assert "larger than" in response.text.lower() or "too large" in response.text.lower()
