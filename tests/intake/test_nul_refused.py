"""U+0000 is refused at intake, in every text a submitter sends and by every way of sending it: a
clear 4xx, the field named, nothing stored. (Every other character is kept, and shown to staff
marked: tests/triage/test_hidden_characters.py.)"""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.intake.models import Tip, TipMessage
from tests.conftest import Organisation

NUL = "\x00"
VALID = {"narrative": "Someone followed me home.", "host_country": "NL", "host_city": "Rotterdam"}
NUL_MESSAGE = "This text holds an invisible null character, which cannot be stored."


def count(session: Session, model: type[Tip] | type[TipMessage]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def submit(client: TestClient) -> str:
    response = client.post("/api/v1/tips", json=VALID)
    assert response.status_code == 201, response.text
    receipt: str = response.json()["receipt"]
    return receipt


NUL_FIELDS = [
    ("narrative", {"narrative": f"They came{NUL} at night."}),
    ("narrative", {"narrative": f"{NUL}"}),
    ("host_city", {"host_city": f"Rotter{NUL}dam"}),
    ("contact_details", {"contact_preference": "other_channel", "contact_details": f"Signal{NUL} +31"}),
]


@pytest.mark.parametrize(("field", "fields"), NUL_FIELDS)
def test_a_json_tip_with_a_nul_gets_422_naming_the_field_and_nothing_is_stored(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    field: str,
    fields: dict[str, str],
) -> None:
    before = count(db_session, Tip)
    response = intake_client.post("/api/v1/tips", json={**VALID, **fields})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_input"
    assert [problem["field"] for problem in body["detail"]["fields"]] == [field]
    assert "null character" in body["detail"]["fields"][0]["message"]
    assert count(db_session, Tip) == before
    # The same tip without the NUL is accepted: nothing else was refused.
    clean = {name: value.replace(NUL, "") or "x" for name, value in fields.items()}
    assert intake_client.post("/api/v1/tips", json={**VALID, **clean}).status_code == 201
    assert count(db_session, Tip) == before + 1


def test_other_control_and_format_characters_are_kept_as_sent(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    """Only NUL is refused: the rest reach staff, marked (a submitter may paste them innocently)."""
    submit(intake_client)
    response = intake_client.post(
        "/api/v1/tips", json={**VALID, "narrative": "a\x01b\x1bc\u202ed\u200be\x7f", "host_city": "x\u2066y"}
    )
    assert response.status_code == 201, response.text
    assert count(db_session, Tip) == 2


def test_a_multipart_tip_with_a_nul_gets_422_and_nothing_is_stored(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    response = intake_client.post(
        "/api/v1/tips",
        data={"narrative": f"See the file{NUL}.", "host_city": "Rotterdam"},
        files=[("files", ("a.txt", b"evidence", "text/plain"))],
    )
    assert response.status_code == 422, response.text
    assert [problem["field"] for problem in response.json()["detail"]["fields"]] == ["narrative"]
    assert count(db_session, Tip) == 0


def test_a_follow_up_message_with_a_nul_gets_422_and_nothing_is_stored(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    receipt = submit(intake_client)
    before = count(db_session, TipMessage)
    refused = intake_client.post(
        "/api/v1/followup/messages", json={"receipt": receipt, "body": f"It was{NUL} Rotterdam."}
    )
    assert refused.status_code == 422, refused.text
    # (The field is reported as "": app.kit.errors.safe_error_fields drops every "body" in a location.)
    [problem] = refused.json()["detail"]["fields"]
    assert "null character" in problem["message"]
    assert count(db_session, TipMessage) == before
    accepted = intake_client.post(
        "/api/v1/followup/messages", json={"receipt": receipt, "body": "Rotterdam."}
    )
    assert accepted.status_code == 201
    assert count(db_session, TipMessage) == before + 1


def hidden_fields(html: str) -> list[tuple[str, str]]:
    return [
        (unescape(name), unescape(value))
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', html)
    ]


@pytest.mark.parametrize("field", ["narrative", "host_city"])
def test_the_report_form_shows_its_field_error_for_a_nul_and_stores_nothing(
    intake_client: TestClient, organisation: Organisation, db_session: Session, field: str
) -> None:
    answers = {"narrative": "They phoned my mother.", "host_country": "IE", "host_city": "Dublin"}
    answers[field] = f"Dub{NUL}lin"
    response = intake_client.post("/report?lang=en", data=answers)
    assert response.status_code == 422
    step = "story" if field == "narrative" else "where"
    assert f'name="step" value="{step}"' in response.text
    assert NUL_MESSAGE in response.text
    assert 'aria-invalid="true"' in response.text
    assert count(db_session, Tip) == 0
    # A step of the form refuses it the same way, before the review page.
    stepped = intake_client.post("/report/step?lang=en", data={"step": step, "go": "next", **answers})
    assert stepped.status_code == 422
    assert NUL_MESSAGE in stepped.text
    assert count(db_session, Tip) == 0


def test_the_refusal_is_translated(intake_client: TestClient, organisation: Organisation) -> None:
    response = intake_client.post(
        "/report?lang=zh-Hans", data={"narrative": f"x{NUL}y", "host_country": "IE", "host_city": "Dublin"}
    )
    assert response.status_code == 422
    assert "空字符" in response.text


def test_a_follow_up_reply_with_a_nul_is_shown_again_with_the_reason_and_nothing_is_stored(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    receipt = submit(intake_client)
    before = count(db_session, TipMessage)
    refused = intake_client.post("/followup/reply", data={"receipt": receipt, "body": f"Rotter{NUL}dam"})
    assert refused.status_code == 422
    assert NUL_MESSAGE in refused.text
    assert count(db_session, TipMessage) == before
    answered = intake_client.post("/followup/reply", data={"receipt": receipt, "body": "Rotterdam"})
    assert answered.status_code == 201
    assert count(db_session, TipMessage) == before + 1
