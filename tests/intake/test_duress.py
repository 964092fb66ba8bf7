"""Duress codes (app.intake.duress): a harmless page for whoever forced the code out of the
submitter, a flag for staff when the organisation asked for one, and no link to the report in
the database."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.crypto.binding import bind
from app.crypto.envelope import DecryptionError
from app.intake import duress
from app.intake.models import (
    DURESS_STATE,
    DuressCode,
    MessageAuthor,
    Tip,
    TipAttachment,
    TipDuressFlag,
    TipMessage,
    TipStatus,
)
from app.intake.receipts import normalize_receipt, receipt_lookup_hash
from app.intake.service import add_message
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from tests.conftest import Backend, Client, Organisation, intake_client_with
from tests.intake.factories import make_tip
from tests.intake.test_followup_pages import blob_names, gps_photo

CODE = re.compile(r'<p class="receipt"[^>]*>(.*?)</p>', re.S)


def shown_code(page: str) -> str:
    """The code a page shows, as the submitter would copy it."""
    match = CODE.search(page)
    assert match is not None
    return re.sub(r"<[^>]+>", "", match.group(1))


def take_duress_code(client: TestClient, receipt: str) -> str:
    page = client.post("/followup/duress", data={"receipt": receipt})
    assert page.status_code == 201
    assert "Your duress code" in page.text
    return shown_code(page.text)


def with_code_blanked(page: str, code: str) -> str:
    return page.replace(code, "CODE")


def table_rows(session: Session, table: str) -> list[tuple[object, ...]]:
    return sorted(
        (tuple(row) for row in session.execute(text(f"SELECT * FROM {table}"))),
        key=repr,
    )


@pytest.fixture
def flagging_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"duress_flags_report": True})


@pytest.fixture
def flagging_client(flagging_settings: Settings, database: Database) -> Iterator[TestClient]:
    with intake_client_with(flagging_settings, database) as client:
        yield client


def answered_tip(session: Session, server_secrets: ServerSecrets) -> tuple[uuid.UUID, str]:
    """A report well under way: a question from a caseworker waits for the submitter."""
    tip_id, receipt = make_tip(session, server_secrets)
    tip = session.get_one(Tip, tip_id)
    add_message(
        session,
        tip,
        "Which station called your mother?",
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
    )
    tip.status = TipStatus.NEEDS_INFO
    session.commit()
    return tip_id, receipt


def test_the_receipt_page_and_the_report_page_offer_a_duress_code(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    _, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    for path in ("/receipt", "/followup"):
        page = intake_client.post(path, data={"receipt": receipt})
        assert page.status_code == 200
        assert 'action="/followup/duress?lang=en"' in page.text
    code = take_duress_code(intake_client, receipt)
    assert normalize_receipt(code) is not None, "it has a receipt's form"
    assert normalize_receipt(code) != normalize_receipt(receipt)


def test_a_duress_code_shows_the_page_of_a_report_just_received_with_no_replies(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    _, receipt = answered_tip(db_session, server_secrets)
    _, fresh_receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    code = take_duress_code(intake_client, receipt)

    real = intake_client.post("/followup", data={"receipt": receipt})
    assert "Which station called your mother?" in real.text
    under_duress = intake_client.post("/followup", data={"receipt": code})
    fresh = intake_client.post("/followup", data={"receipt": fresh_receipt})
    assert under_duress.status_code == fresh.status_code == 200
    assert "Which station called your mother?" not in under_duress.text
    assert with_code_blanked(under_duress.text, code) == with_code_blanked(fresh.text, fresh_receipt)
    assert under_duress.headers.keys() == fresh.headers.keys()

    api_duress = intake_client.post("/api/v1/followup", json={"receipt": code})
    api_fresh = intake_client.post("/api/v1/followup", json={"receipt": fresh_receipt})
    assert api_duress.status_code == api_fresh.status_code == 200
    assert api_duress.json() == api_fresh.json() == {"status": "new", "messages": []}


def test_what_is_sent_with_a_duress_code_goes_nowhere_but_is_answered_as_sent(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    settings: Settings,
) -> None:
    tip_id, receipt = answered_tip(db_session, server_secrets)
    code = take_duress_code(intake_client, receipt)
    messages_before = db_session.scalar(select(func.count()).select_from(TipMessage))
    blobs_before = blob_names(settings)

    sent = intake_client.post("/followup/reply", data={"receipt": code, "body": "I withdraw everything."})
    assert sent.status_code == 201
    assert "Your message was sent." in sent.text
    assert "From you," in sent.text, "the page shows it as a real one would, without its text"
    assert "I withdraw everything." not in sent.text
    assert (
        intake_client.post("/api/v1/followup/messages", json={"receipt": code, "body": "again"}).status_code
        == 201
    )
    again = intake_client.post("/api/v1/followup", json={"receipt": code}).json()
    assert [message["author"] for message in again["messages"]] == ["submitter", "submitter"]

    files = intake_client.post(
        "/followup/files",
        data={"receipt": code},
        files=[("files", ("photo.jpg", gps_photo(), "image/jpeg"))],
    )
    assert files.status_code == 201
    assert "Your files were received." in files.text

    db_session.expire_all()
    assert db_session.scalar(select(func.count()).select_from(TipMessage)) == messages_before
    assert (
        db_session.scalar(
            select(func.count()).select_from(TipAttachment).where(TipAttachment.tip_id == tip_id)
        )
        == 0
    )
    assert blob_names(settings) == blobs_before, "the discarded file's ciphertext is deleted too"
    assert db_session.get_one(Tip, tip_id).status is TipStatus.NEEDS_INFO


def test_deleting_with_a_duress_code_keeps_the_report_and_retires_the_code(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, receipt = answered_tip(db_session, server_secrets)
    _, other_receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    code = take_duress_code(intake_client, receipt)
    asked = intake_client.post("/followup/delete", data={"receipt": code})
    asked_for_real = intake_client.post("/followup/delete", data={"receipt": other_receipt})
    assert with_code_blanked(asked.text, code) == with_code_blanked(asked_for_real.text, other_receipt)

    deleted = intake_client.post("/followup/delete", data={"receipt": code, "confirm": "yes"})
    really_deleted = intake_client.post("/followup/delete", data={"receipt": other_receipt, "confirm": "yes"})
    assert deleted.status_code == really_deleted.status_code == 200
    assert deleted.text == really_deleted.text
    for gone in (code, other_receipt):
        assert intake_client.post("/followup", data={"receipt": gone}).status_code == 401
        assert intake_client.post("/api/v1/followup", json={"receipt": gone}).status_code == 401
    db_session.expire_all()
    assert db_session.get(Tip, tip_id) is not None
    assert intake_client.post("/followup", data={"receipt": receipt}).status_code == 200


def test_a_duress_code_opens_nothing_once_the_report_is_deleted(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    _, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    code = take_duress_code(intake_client, receipt)
    assert (
        intake_client.post("/followup/delete", data={"receipt": receipt, "confirm": "yes"}).status_code == 200
    )
    gone = intake_client.post("/followup", data={"receipt": code})
    assert gone.status_code == 401
    assert "No report matches this receipt" in gone.text


def test_a_duress_code_asked_for_with_a_duress_code_stands_for_the_same_report(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    first = take_duress_code(intake_client, receipt)
    second = take_duress_code(intake_client, first)
    opened = duress.open_duress_code(db_session, second, server_secrets.receipt_pepper)
    assert opened is not None
    assert opened.state.tip_id == tip_id


def test_unless_the_organisation_asked_using_a_duress_code_writes_nothing(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    backend: Backend,
) -> None:
    _, receipt = answered_tip(db_session, server_secrets)
    code = take_duress_code(intake_client, receipt)
    tables = [
        name for name in inspect(db_session.connection()).get_table_names() if name != "alembic_version"
    ]
    before = {table: table_rows(db_session, table) for table in tables}
    assert intake_client.post("/followup", data={"receipt": code}).status_code == 200
    assert intake_client.post("/api/v1/followup", json={"receipt": code}).status_code == 200
    db_session.expire_all()
    after = {table: table_rows(db_session, table) for table in tables}
    assert after == before
    assert db_session.scalar(select(func.count()).select_from(TipDuressFlag)) == 0


def test_when_the_organisation_asked_staff_see_the_flag_and_replies_stop(
    flagging_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    signed_in: Client,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    assert caseworker.post(f"/api/v1/tips/{tip_id}/claim").status_code == 200
    offer = flagging_client.post("/followup", data={"receipt": receipt})
    assert "we stop replying to your report" in offer.text
    code = take_duress_code(flagging_client, receipt)
    assert caseworker.get(f"/api/v1/tips/{tip_id}").json()["duress_flagged_on"] is None

    assert flagging_client.post("/followup", data={"receipt": code}).status_code == 200

    detail = caseworker.get(f"/api/v1/tips/{tip_id}").json()
    assert detail["duress_flagged_on"] is not None
    page = caseworker.get(f"/tips/{tip_id}")
    assert "data-duress" in page.text
    assert f'action="/tips/{tip_id}/message"' not in page.text
    refused = caseworker.post(
        f"/api/v1/tips/{tip_id}/messages", json={"body": "Are you safe?", "question": False}
    )
    assert refused.status_code == 409
    assert refused.json()["error"] == "submitter_under_duress"
    db_session.expire_all()
    assert (
        db_session.scalar(select(func.count()).select_from(TipMessage).where(TipMessage.tip_id == tip_id))
        == 0
    )
    # The real receipt still opens the report; the code goes on showing the harmless page.
    assert flagging_client.post("/followup", data={"receipt": receipt}).status_code == 200
    assert flagging_client.post("/followup", data={"receipt": code}).status_code == 200
    assert db_session.scalar(select(func.count()).select_from(TipDuressFlag)) == 1


def test_the_database_alone_does_not_link_a_duress_code_to_its_report(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    backend: Backend,
) -> None:
    """What a copy of the database shows: rows that name no report, hold no date, and open
    only with the code itself."""
    reports = [make_tip(db_session, server_secrets) for _ in range(3)]
    db_session.commit()
    tips_before = table_rows(db_session, "tips")
    codes = {tip_id: take_duress_code(intake_client, receipt) for tip_id, receipt in reports}
    db_session.expire_all()
    assert table_rows(db_session, "tips") == tips_before, "making a code changes nothing of the report"

    columns = {column["name"] for column in inspect(db_session.connection()).get_columns("duress_codes")}
    assert columns == {"id", "lookup_hash", "sealed_state"}
    rows = list(db_session.scalars(select(DuressCode)))
    assert len(rows) == len(reports)
    pepper = server_secrets.receipt_pepper
    for tip_id, receipt in reports:
        tip = db_session.get_one(Tip, tip_id)
        identifying = {
            tip_id.bytes,
            tip_id.hex.encode(),
            str(tip_id).encode(),
            tip.receipt_lookup_hash,
            tip.ref.encode(),
        }
        for row in rows:
            stored = row.id.bytes + row.lookup_hash + row.sealed_state
            assert not any(value in stored for value in identifying)
        # The code's hash is not the hash a receipt of the same digits would have: no row of one
        # table can be matched against the other.
        digits = normalize_receipt(codes[tip_id])
        assert digits is not None
        assert receipt_lookup_hash(pepper, codes[tip_id]) not in {row.lookup_hash for row in rows}
        assert duress.duress_lookup_hash(pepper, receipt) not in {row.lookup_hash for row in rows}
    # Each row's state opens with its own code's key only; the pepper alone opens none.
    for row in rows:
        pepper_only_key = hmac.new(pepper, bind("daylight/duress-state-key/v1"), hashlib.sha256).digest()
        with pytest.raises(DecryptionError):
            DURESS_STATE.open(pepper_only_key, row.sealed_state, row_id=str(row.id))
        opened_by = [
            tip_id
            for tip_id, code in codes.items()
            if duress.duress_lookup_hash(pepper, code) == row.lookup_hash
        ]
        assert len(opened_by) == 1
        other_code = next(code for tip_id, code in codes.items() if tip_id != opened_by[0])
        other_holder = duress.open_duress_code(db_session, other_code, pepper)
        assert other_holder is not None
        with pytest.raises(DecryptionError):
            DURESS_STATE.open(other_holder.key, row.sealed_state, row_id=str(row.id))
    # SQLite keeps no creation order: the table has no rowid.
    if backend.name == "sqlite":
        with pytest.raises((OperationalError, ProgrammingError)):
            db_session.execute(text("SELECT rowid FROM duress_codes")).all()


def test_a_code_taken_with_a_duress_code_behaves_as_a_code_of_the_same_report(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    """With a real receipt, deleting the report retires every code taken from it; a coercer who
    tries that with the codes of a duress code must see the same."""
    _, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    first = take_duress_code(intake_client, receipt)
    second = take_duress_code(intake_client, first)
    third = take_duress_code(intake_client, second)
    assert intake_client.post("/followup/reply", data={"receipt": second, "body": "x"}).status_code == 201
    seen = {
        code: intake_client.post("/api/v1/followup", json={"receipt": code}).json() for code in (first, third)
    }
    assert seen[first] == seen[third]
    assert len(seen[first]["messages"]) == 1
    assert (
        intake_client.post("/followup/delete", data={"receipt": third, "confirm": "yes"}).status_code == 200
    )
    for code in (first, second, third):
        assert intake_client.post("/followup", data={"receipt": code}).status_code == 401
    assert intake_client.post("/followup", data={"receipt": receipt}).status_code == 200


def test_the_receipt_page_of_an_urgent_report_is_the_same_with_its_duress_code(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    _, receipt = make_tip(db_session, server_secrets, urgent=True)
    db_session.commit()
    code = take_duress_code(intake_client, receipt)
    real = intake_client.post("/receipt", data={"receipt": receipt})
    under_duress = intake_client.post("/receipt", data={"receipt": code})
    assert "If someone is in immediate danger" in under_duress.text

    def without_the_code(page: str, shown: str) -> str:
        return CODE.sub("", with_code_blanked(page, shown))

    assert without_the_code(under_duress.text, code) == without_the_code(real.text, receipt)


def test_every_message_sent_with_a_duress_code_is_listed_as_a_real_one_would_be(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    _, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    code = take_duress_code(intake_client, receipt)
    holder = duress.open_duress_code(db_session, code, server_secrets.receipt_pepper)
    assert holder is not None
    for _ in range(60):
        duress.record_message(holder)
    db_session.commit()
    listed = intake_client.post("/api/v1/followup", json={"receipt": code}).json()["messages"]
    assert len(listed) == 60


def test_a_duress_row_that_does_not_open_is_an_unknown_code_not_a_500(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    _, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    code = take_duress_code(intake_client, receipt)
    row = db_session.scalars(select(DuressCode)).one()
    row.sealed_state = row.sealed_state[:-1] + bytes([row.sealed_state[-1] ^ 1])
    db_session.commit()
    refused = intake_client.post("/followup", data={"receipt": code})
    assert refused.status_code == 401
    assert "No report matches this receipt" in refused.text


def test_a_flag_another_request_wrote_meanwhile_is_no_error(
    flagging_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two first uses at once: both see no flag, both insert; the second must not be a 500."""
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    code = take_duress_code(flagging_client, receipt)
    db_session.add(TipDuressFlag(tip_id=tip_id, flagged_on=dt.date.today()))
    db_session.commit()
    real_get = Session.get

    def not_seen_yet(session: Session, entity: object, ident: object, **kwargs: object) -> object:
        return None if entity is TipDuressFlag else real_get(session, entity, ident, **kwargs)  # type: ignore[arg-type, call-overload]

    monkeypatch.setattr(Session, "get", not_seen_yet)
    assert flagging_client.post("/followup", data={"receipt": code}).status_code == 200
