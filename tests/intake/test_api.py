"""The intake API contract (DESIGN 8) and its refusals: 4xx, never a partial row or orphan file."""

from __future__ import annotations

import io
import re
import unicodedata
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.intake.models import MessageAuthor, Tip, TipAttachment, TipMessage, TipStatus
from app.intake.receipts import normalize_receipt, receipt_lookup_hash, receipt_private_key
from app.intake.service import add_message
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.conftest import Organisation
from tests.intake.factories import make_tip

RECEIPT_FORMAT = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){5}$")
VALID = {
    "narrative": "Someone followed me home.",
    "language": "en",
    "tactics": ["surveillance"],
    "host_country": "NL",
    "host_city": "Rotterdam",
    "urgent": False,
}


def count(session: Session, model: type[Tip] | type[TipAttachment] | type[TipMessage]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def blobs(settings: Settings) -> list[Path]:
    return sorted(settings.blobs_dir.glob("*")) if settings.blobs_dir.exists() else []


def submit(client: TestClient, **overrides: object) -> str:
    response = client.post("/api/v1/tips", json={**VALID, **overrides})
    assert response.status_code == 201, response.text
    receipt: str = response.json()["receipt"]
    return receipt


def test_json_submission_returns_a_grouped_receipt_of_120_bits(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    receipt = submit(intake_client)
    assert RECEIPT_FORMAT.match(receipt)
    tip = db_session.scalars(select(Tip)).one()
    assert tip.status is TipStatus.NEW
    assert tip.urgent is False


def test_minimal_submission_needs_only_a_narrative(
    intake_client: TestClient, organisation: Organisation
) -> None:
    assert intake_client.post("/api/v1/tips", json={"narrative": "x"}).status_code == 201


def test_multipart_submission_stores_each_file_encrypted_without_its_name(
    intake_client: TestClient, organisation: Organisation, db_session: Session, settings: Settings
) -> None:
    evidence = b"PHOTO-BYTES-" * 20_000
    response = intake_client.post(
        "/api/v1/tips",
        data={"narrative": "See the photo.", "tactics": ["physical", "other"], "host_country": "de"},
        files=[
            ("files", ("my-street-name.jpg", evidence, "image/jpeg")),
            ("files", ("second.txt", b"note", "text/plain")),
        ],
    )
    assert response.status_code == 201, response.text
    assert count(db_session, TipAttachment) == 2
    stored = blobs(settings)
    assert len(stored) == 2
    for path in stored:
        content = path.read_bytes()
        assert b"PHOTO-BYTES" not in content
        assert b"my-street-name" not in content
    assert "my-street-name" not in "".join(p.name for p in stored)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "narrative": "x" * 20_001}, "narrative"),
        ({**VALID, "narrative": ""}, "narrative"),
        ({**VALID, "tactics": ["family_pressure", "mind_control"]}, "tactics.1"),
        ({**VALID, "host_country": "QQ"}, "host_country"),
        ({**VALID, "host_country": "EU"}, "host_country"),
        ({**VALID, "language": "fr"}, "language"),
        ({**VALID, "status": "verified"}, "status"),
        ({**VALID, "urgent": "very"}, "urgent"),
    ],
)
def test_invalid_submission_is_refused_with_422_and_nothing_written(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    body: dict[str, object],
    field: str,
) -> None:
    response = intake_client.post("/api/v1/tips", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert field in [error["field"] for error in detail["fields"]]
    assert "x" * 100 not in response.text  # the submitted value is not echoed back
    assert count(db_session, Tip) == 0


def test_a_narrative_of_exactly_20000_characters_is_accepted(
    intake_client: TestClient, organisation: Organisation
) -> None:
    submit(intake_client, narrative="字" * 20_000)


def test_json_body_over_one_mebibyte_gets_413(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    body = b'{"narrative": "' + b"a" * (1024 * 1024) + b'"}'
    response = intake_client.post("/api/v1/tips", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert count(db_session, Tip) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 422),
        (b"narrative=hi", "application/x-www-form-urlencoded", 415),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400),
        (b"hello", "multipart/form-data", 400),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    content: bytes,
    content_type: str,
    status: int,
) -> None:
    response = intake_client.post("/api/v1/tips", content=content, headers={"content-type": content_type})
    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"}
    assert count(db_session, Tip) == 0


def test_too_many_files_get_413_and_leave_no_file_or_row(
    intake_client: TestClient, organisation: Organisation, db_session: Session, settings: Settings
) -> None:
    files = [("files", (f"f{i}.txt", b"x", "text/plain")) for i in range(settings.max_files_per_tip + 1)]
    response = intake_client.post("/api/v1/tips", data={"narrative": "many"}, files=files)
    assert response.status_code == 413
    assert count(db_session, Tip) == 0
    assert count(db_session, TipAttachment) == 0
    assert blobs(settings) == []


def test_an_oversized_file_gets_413_and_leaves_no_file_or_row(
    organisation: Organisation, db_session: Session, settings: Settings, database: object
) -> None:
    from app.entrypoints.apps import create_intake_app

    small = settings.model_copy(update={"max_file_bytes": 100_000})
    with TestClient(
        create_intake_app(small, database=database),  # type: ignore[arg-type]
        base_url="https://testserver",
    ) as client:
        response = client.post(
            "/api/v1/tips",
            data={"narrative": "big"},
            files=[
                ("files", ("ok.bin", b"1" * 10, "application/octet-stream")),
                ("files", ("big.bin", io.BytesIO(b"0" * 300_000), "x/y")),
            ],
        )
    assert response.status_code == 413
    assert "larger" in response.json()["detail"]
    assert count(db_session, Tip) == 0
    assert blobs(settings) == []


def test_invalid_fields_after_uploaded_files_leave_no_orphan_file(
    intake_client: TestClient, organisation: Organisation, db_session: Session, settings: Settings
) -> None:
    response = intake_client.post(
        "/api/v1/tips",
        data={"narrative": "x", "host_country": "XX"},
        files=[("files", ("a.txt", b"evidence", "text/plain"))],
    )
    assert response.status_code == 422
    assert count(db_session, TipAttachment) == 0
    assert blobs(settings) == []


def test_a_file_in_another_field_is_refused(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    response = intake_client.post(
        "/api/v1/tips", data={"narrative": "x"}, files=[("narrative", ("a.txt", b"evidence", "text/plain"))]
    )
    assert response.status_code == 422
    assert count(db_session, Tip) == 0


def test_submission_before_init_is_a_clear_503(intake_client: TestClient) -> None:
    response = intake_client.post("/api/v1/tips", json=VALID)
    assert response.status_code == 503
    assert response.json()["error"] == "not_initialised"


def _full_width(text: str) -> str:
    return "".join(
        unicodedata.lookup(f"FULLWIDTH {unicodedata.name(ch)}") if ch.isalnum() else ch for ch in text
    )


def test_followup_accepts_the_receipt_however_it_is_typed(
    intake_client: TestClient, organisation: Organisation
) -> None:
    receipt = submit(intake_client)
    typed_variants = [
        receipt,
        receipt.lower(),
        receipt.replace("-", " "),
        receipt.replace("-", ""),
        "  " + receipt.replace("-", " – ") + "\n",
        _full_width(receipt),
    ]
    for typed in typed_variants:
        response = intake_client.post("/api/v1/followup", json={"receipt": typed})
        assert response.status_code == 200, typed
        assert response.json() == {"status": "new", "messages": []}


@pytest.mark.parametrize("typed", ["", "nonsense", "0000-0000-0000-0000-0000-0000", "U" * 24, "A" * 199])
def test_unknown_and_malformed_receipts_get_the_same_401(
    intake_client: TestClient, organisation: Organisation, typed: str
) -> None:
    submit(intake_client)
    unknown = intake_client.post("/api/v1/followup", json={"receipt": typed})
    assert unknown.status_code == 401
    assert unknown.json() == {"error": "unknown_receipt", "detail": "No report matches this receipt."}
    message = intake_client.post("/api/v1/followup/messages", json={"receipt": typed, "body": "hi"})
    assert message.status_code == 401
    assert message.json() == unknown.json()


def test_submitter_reads_staff_replies_and_answers(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    receipt = submit(intake_client)
    tip = db_session.scalars(select(Tip)).one()
    add_message(
        db_session,
        tip,
        "Which city was it?",
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
        author_account_id=organisation.members[next(iter(organisation.members))].account.id,
    )
    tip.status = TipStatus.NEEDS_INFO
    db_session.commit()

    view = intake_client.post("/api/v1/followup", json={"receipt": receipt}).json()
    assert view["status"] == "needs_info"
    assert [m["body"] for m in view["messages"]] == ["Which city was it?"]

    answered = intake_client.post(
        "/api/v1/followup/messages", json={"receipt": receipt, "body": "It was Rotterdam."}
    )
    assert answered.status_code == 201
    view = intake_client.post("/api/v1/followup", json={"receipt": receipt}).json()
    assert view["status"] == "in_review"
    # The submitter's own words are sealed to the organisation only.
    assert [(m["author"], m["body"]) for m in view["messages"]] == [
        ("staff", "Which city was it?"),
        ("submitter", None),
    ]
    assert count(db_session, TipMessage) == 2


def test_a_reply_cannot_be_read_with_another_tips_receipt(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    first = submit(intake_client)
    second = submit(intake_client)
    tip_ids = {t.id for t in db_session.scalars(select(Tip))}
    assert len(tip_ids) == 2
    for tip in db_session.scalars(select(Tip)):
        add_message(
            db_session, tip, f"reply for {tip.id}", author=MessageAuthor.STAFF, server_secrets=server_secrets
        )
    db_session.commit()
    bodies = [
        intake_client.post("/api/v1/followup", json={"receipt": r}).json()["messages"][0]["body"]
        for r in (first, second)
    ]
    assert bodies[0] != bodies[1]


def test_followup_message_bounds(intake_client: TestClient, organisation: Organisation) -> None:
    receipt = submit(intake_client)
    too_long = intake_client.post(
        "/api/v1/followup/messages", json={"receipt": receipt, "body": "x" * 20_001}
    )
    assert too_long.status_code == 422
    empty = intake_client.post("/api/v1/followup/messages", json={"receipt": receipt, "body": "  "})
    assert empty.status_code == 422


def test_healthz(intake_client: TestClient) -> None:
    assert intake_client.get("/healthz").json() == {"status": "ok"}


def test_the_stored_receipt_key_cannot_be_found_without_the_pepper(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    """A database copy plus a seized receipt, without the server's secrets, links to nothing."""
    receipt = submit(intake_client)
    tip = db_session.scalars(select(Tip)).one()
    digits = normalize_receipt(receipt)
    assert digits is not None
    derived = receipt_private_key(server_secrets.receipt_pepper, digits).public_key().raw
    assert derived == tip.receipt_public_key
    guessed_pepper = bytes(32)
    assert receipt_private_key(guessed_pepper, digits).public_key().raw != tip.receipt_public_key
    assert receipt_lookup_hash(guessed_pepper, receipt) != tip.receipt_lookup_hash


@pytest.mark.parametrize("receipt", [None, 12345, "x" * 5000, ["a"], {"r": 1}, True])
def test_a_receipt_of_any_shape_that_matches_nothing_gets_the_same_401(
    intake_client: TestClient, organisation: Organisation, receipt: object
) -> None:
    response = intake_client.post("/api/v1/followup", json={"receipt": receipt})
    assert response.status_code == 401
    assert response.json() == {"error": "unknown_receipt", "detail": "No report matches this receipt."}


def test_absurdly_nested_json_is_a_400_not_a_crash(
    intake_client: TestClient, organisation: Organisation
) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    for path in ("/api/v1/tips", "/api/v1/followup", "/api/v1/followup/messages"):
        response = intake_client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, path


def test_an_empty_file_part_stores_nothing(
    intake_client: TestClient, organisation: Organisation, db_session: Session, settings: Settings
) -> None:
    """Browsers send filename="" with no bytes when no file was chosen."""
    body = (
        b'--B\r\nContent-Disposition: form-data; name="narrative"\r\n\r\nno file chosen\r\n'
        b'--B\r\nContent-Disposition: form-data; name="files"; filename=""\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n"
    )
    response = intake_client.post(
        "/api/v1/tips", content=body, headers={"content-type": "multipart/form-data; boundary=B"}
    )
    assert response.status_code == 201
    assert count(db_session, TipAttachment) == 0
    assert blobs(settings) == []


def test_unknown_form_fields_and_too_many_parts_are_refused(
    intake_client: TestClient, organisation: Organisation, db_session: Session, settings: Settings
) -> None:
    unknown = intake_client.post(
        "/api/v1/tips",
        data={"narrative": "x", "favourite_colour": "red"},
        files=[("files", ("a.txt", b"a", "text/plain"))],
    )
    assert unknown.status_code == 422
    many = intake_client.post(
        "/api/v1/tips",
        files=[("tactics", (None, "other"))] * (settings.max_form_parts + 1) + [("narrative", (None, "x"))],
    )
    assert many.status_code == 413
    assert count(db_session, Tip) == 0
    assert blobs(settings) == []


def test_a_message_moved_to_another_tip_no_longer_opens(
    intake_client: TestClient,
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    from app.audit_log.models import AuditEvent
    from app.intake.models import TipMessage
    from tests.auth.factories import login

    _, first_receipt = make_tip(db_session, server_secrets)
    second, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    assert (
        intake_client.post(
            "/api/v1/followup/messages", json={"receipt": first_receipt, "body": "about my uncle"}
        ).status_code
        == 201
    )
    message = db_session.scalars(select(TipMessage)).one()
    message.tip_id = second  # what a database writer might do
    db_session.commit()
    assert login(staff_client, organisation[Role.CASEWORKER]).status_code == 200
    response = staff_client.get(f"/api/v1/tips/{second}")
    # Its MAC binds it to its first tip: moved, it is never opened nor shown, and the read
    # records an integrity alert (before row MACs, the AEAD caught it as a 500).
    assert response.status_code == 200
    assert response.json()["messages"] == []
    assert "about my uncle" not in response.text
    alert = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "integrity.alert")).one()
    assert alert.object_id == str(message.id)


def test_a_multipart_tip_posted_from_another_site_is_refused(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    for headers in ({"sec-fetch-site": "cross-site"}, {"origin": "https://evil.example"}):
        response = intake_client.post(
            "/api/v1/tips",
            headers=headers,
            data={"narrative": "planted"},
            files=[("files", ("a.txt", b"x", "text/plain"))],
        )
        assert response.status_code == 403
    assert count(db_session, Tip) == 0
