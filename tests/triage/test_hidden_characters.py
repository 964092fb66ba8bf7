"""A submitter cannot make staff misread a report: direction overrides, isolates and invisible
characters sent through the real intake API reach the staff pages as visible, named markers, and
never as the characters themselves (issue 18; app/web/visible_text.py)."""

from __future__ import annotations

import re
import unicodedata
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.intake.models import Tip, TipStatus
from tests.conftest import Client, Organisation

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE
PDF = "\u202c"  # POP DIRECTIONAL FORMATTING
LRI = "\u2066"  # LEFT-TO-RIGHT ISOLATE
ZWSP = "\u200b"  # ZERO WIDTH SPACE
HIDDEN = (RLO, PDF, LRI, ZWSP)
NARRATIVE = f"Call the officer at +1 555 {RLO}0123{PDF}.\nHis name is Ali{ZWSP}jan."


def submit(intake_client: TestClient, **fields: object) -> str:
    response = intake_client.post(
        "/api/v1/tips",
        json={"narrative": NARRATIVE, "tactics": ["surveillance"], "host_country": "IE", **fields},
    )
    assert response.status_code == 201, response.text
    receipt: str = response.json()["receipt"]
    return receipt


def the_tip(db_session: Session) -> uuid.UUID:
    return db_session.scalars(select(Tip.id)).one()


def markers(html: str) -> list[tuple[str, str]]:
    """(title, shown text) of every marker on a page."""
    return re.findall(r'<span class="hidden-char" dir="ltr" title="([^"]+)">([^<]+)</span>', html)


def marker_of(code: str) -> str:
    """The marker element that stands for one of the characters these tests send."""
    name = {char: unicodedata.name(char) for char in HIDDEN}[chr(int(code[2:], 16))]
    return f'<span class="hidden-char" dir="ltr" title="{code} {name}">⟨{code}⟩</span>'


def assert_no_hidden_character(html: str) -> None:
    for char in HIDDEN:
        assert char not in html, f"U+{ord(char):04X} reached the page"


def csrf(client: TestClient, page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text)
    assert match
    return match.group(1)


def test_the_narrative_and_answers_show_their_hidden_characters_as_markers(
    intake_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    submit(
        intake_client,
        host_city=f"{LRI}Dublin",
        contact_preference="other_channel",
        contact_details=f"Signal {RLO}+44 7700 900123",
    )
    tip_id = the_tip(db_session)
    caseworker = signed_in(organisation[Role.CASEWORKER])
    page = caseworker.get(f"/tips/{tip_id}")
    assert page.status_code == 200
    assert_no_hidden_character(page.text)
    narrative = re.search(r'<div class="narrative" dir="auto">(.*?)</div>', page.text, re.S)
    assert narrative is not None
    assert markers(narrative.group(1)) == [
        ("U+202E RIGHT-TO-LEFT OVERRIDE", "⟨U+202E⟩"),
        ("U+202C POP DIRECTIONAL FORMATTING", "⟨U+202C⟩"),
        ("U+200B ZERO WIDTH SPACE", "⟨U+200B⟩"),
    ]
    # Nothing else changed: the words and the line break are where the submitter put them.
    assert re.sub(r"<span[^>]*>[^<]*</span>", "", narrative.group(1)) == (
        "Call the officer at +1 555 0123.\nHis name is Alijan."
    )
    assert "<dt>Where</dt><dd><bdi>" + marker_of("U+2066") + "Dublin</bdi>, Ireland</dd>" in page.text
    assert "Signal " + marker_of("U+202E") + "+44 7700 900123" in page.text
    # The stylesheet the page loads makes the marker stand out.
    assert ".hidden-char {" in caseworker.get("/static/staff.css").text
    # The API's contract is the narrative as sent, to the character.
    detail = caseworker.get(f"/api/v1/tips/{tip_id}").json()
    assert detail["narrative"] == NARRATIVE
    assert detail["host_city"] == f"{LRI}Dublin"


def test_a_follow_up_message_and_a_note_show_their_hidden_characters_as_markers(
    intake_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    receipt = submit(intake_client)
    tip_id = the_tip(db_session)
    answered = intake_client.post(
        "/api/v1/followup/messages", json={"receipt": receipt, "body": f"It was {RLO}2024-03-01{PDF} ok"}
    )
    assert answered.status_code == 201, answered.text
    caseworker = signed_in(organisation[Role.CASEWORKER])
    token = csrf(caseworker, f"/tips/{tip_id}")
    assert caseworker.post(f"/tips/{tip_id}/claim", data={"csrf_token": token}).status_code == 200
    noted = caseworker.post(f"/tips/{tip_id}/note", data={"csrf_token": token, "body": f"Pasted: {LRI}x"})
    assert noted.status_code == 200
    page = caseworker.get(f"/tips/{tip_id}").text
    assert_no_hidden_character(page)
    conversation = re.search(r'<ol class="messages">(.*?)</ol>', page, re.S)
    assert conversation is not None
    assert "It was " + marker_of("U+202E") + "2024-03-01" in conversation.group(1)
    assert [code for _, code in markers(conversation.group(1))] == ["⟨U+202E⟩", "⟨U+202C⟩"]
    assert "Pasted: " + marker_of("U+2066") + "x" in page


def test_duplicate_suggestions_show_the_city_they_share_with_its_markers(
    intake_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    for _ in range(2):
        submit(intake_client, host_city=f"Dub{ZWSP}lin")
    first, second = db_session.scalars(select(Tip.id).order_by(Tip.received_on, Tip.id)).all()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    assert caseworker.get(f"/tips/{first}").status_code == 200  # opened: indexed for matching
    page = caseworker.get(f"/tips/{second}").text
    suggestions = re.search(r'<ul class="duplicates">(.*?)</ul>', page, re.S)
    assert suggestions is not None
    assert "city: dub" + marker_of("U+200B") + "lin" in suggestions.group(1)
    assert_no_hidden_character(page)


def test_case_pages_show_hidden_characters_as_markers(
    signed_in: Client, organisation: Organisation, db_session: Session, intake_client: TestClient
) -> None:
    submit(intake_client)
    tip_id = the_tip(db_session)
    db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    db_session.commit()
    lead = signed_in(organisation[Role.LEAD])
    created = lead.post(
        "/api/v1/cases",
        json={"title": f"Visits {RLO}nilbuD", "summary": f"From report {ZWSP}one", "tip_ids": [str(tip_id)]},
    )
    assert created.status_code == 201, created.text
    case_page = lead.get(f"/cases/{created.json()['id']}").text
    assert_no_hidden_character(case_page)
    assert "Visits " + marker_of("U+202E") + "nilbuD</h1>" in case_page
    assert "From report " + marker_of("U+200B") + "one" in case_page
    listing = lead.get("/cases").text
    assert_no_hidden_character(listing)
    assert "<td>Visits " + marker_of("U+202E") + "nilbuD</td>" in listing
