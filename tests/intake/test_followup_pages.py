"""Coming back with the receipt, without JavaScript: status, replies, answers, files, deletion."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.crypto.envelope import DecryptionError
from app.intake.models import (
    ATTACHMENT_BLOB,
    ATTACHMENT_DETAILS,
    FOLLOWUP_ATTACHMENT_KEY,
    TIP_DATA_KEY,
    MessageAuthor,
    Tip,
    TipAttachment,
    TipMessage,
    TipStatus,
    attachment_row_id,
)
from app.intake.service import add_message
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.conftest import Organisation
from tests.intake.factories import make_tip


def count(session: Session, model: type[Tip] | type[TipAttachment] | type[TipMessage]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def blob_names(settings: Settings) -> set[str]:
    return {path.name for path in settings.blobs_dir.iterdir()} if settings.blobs_dir.exists() else set()


def gps_photo() -> bytes:
    """A JPEG as a phone writes it: with the place it was taken and the camera that took it."""
    exif = Image.Exif()
    exif[0x010F] = "CanaryCam"  # Make
    exif[0x0110] = "Model-CANARY-42"
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (53.0, 20.0, 31.0), 3: "W", 4: (6.0, 15.0, 37.0)})
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def open_attachment(
    organisation: Organisation, tip: Tip, attachment: TipAttachment, settings: Settings
) -> tuple[bytes, dict[str, object]]:
    """The file and its details as a key holder would read them."""
    if attachment.sealed_data_key is None:
        key = TIP_DATA_KEY.open(
            organisation.intake.private,
            tip.sealed_data_key,
            row_id=str(tip.id),
            key_version=tip.intake_key_version,
        )
        version = tip.intake_key_version
    else:
        assert attachment.intake_key_version is not None
        version = attachment.intake_key_version
        key = FOLLOWUP_ATTACHMENT_KEY.open(
            organisation.intake.private,
            attachment.sealed_data_key,
            row_id=attachment_row_id(tip.id, attachment.id),
            key_version=version,
        )
    details = json.loads(
        ATTACHMENT_DETAILS.open(
            key, attachment.details_encrypted, row_id=str(attachment.id), key_version=version
        )
    )
    with (settings.blobs_dir / attachment.id.hex).open("rb") as source:
        data = b"".join(
            ATTACHMENT_BLOB.decrypt_chunks(source, key, row_id=str(attachment.id), key_version=version)
        )
    return data, details


def test_the_receipt_page_leads_to_a_page_with_no_cookie(intake_client: TestClient) -> None:
    response = intake_client.get("/followup")
    assert response.status_code == 200
    assert 'action="/followup?lang=en#errors"' in response.text
    assert 'name="receipt"' in response.text
    assert "set-cookie" not in response.headers


def test_a_receipt_that_opens_nothing_gets_the_same_401_page(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    make_tip(db_session, server_secrets)
    db_session.commit()
    pages = [
        intake_client.post("/followup", data={"receipt": typed})
        for typed in ("0000-0000-0000-0000-0000-0000", "not a receipt", "")
    ]
    assert {page.status_code for page in pages} == {401}
    assert all("No report matches this receipt" in page.text for page in pages)


def test_status_and_replies_are_shown_and_the_answer_goes_back_to_review(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    tip = db_session.get_one(Tip, tip_id)
    add_message(
        db_session,
        tip,
        "Which city was <it>?",
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
        author_account_id=organisation[Role.CASEWORKER].account.id,
    )
    tip.status = TipStatus.NEEDS_INFO
    db_session.commit()

    typed = receipt.lower().replace("-", " ")  # however it was written down
    page = intake_client.post("/followup", data={"receipt": typed})
    assert page.status_code == 200
    assert "We have a question for you" in page.text
    assert "Which city was &lt;it&gt;?" in page.text

    empty = intake_client.post("/followup/reply", data={"receipt": typed, "body": "   "})
    assert empty.status_code == 422
    assert count(db_session, TipMessage) == 1

    answered = intake_client.post("/followup/reply", data={"receipt": typed, "body": "It was Rotterdam."})
    assert answered.status_code == 201
    assert "Your message was sent." in answered.text
    assert "Being reviewed" in answered.text
    assert "It was Rotterdam." not in answered.text  # sealed to the organisation only
    db_session.expire_all()
    assert db_session.get_one(Tip, tip_id).status is TipStatus.IN_REVIEW
    assert count(db_session, TipMessage) == 2


def test_files_added_later_get_their_own_key_bound_to_the_tip_and_lose_their_metadata(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    settings: Settings,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    other_id, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    photo = gps_photo()
    response = intake_client.post(
        "/followup/files",
        data={"receipt": receipt},
        files=[
            ("files", ("IMG_4032 at home.jpg", photo, "image/jpeg")),
            ("files", ("statement.pdf", b"%PDF-1.7 author=Me", "application/pdf")),
        ],
    )
    assert response.status_code == 201, response.text
    assert "Your files were received." in response.text
    tip = db_session.get_one(Tip, tip_id)
    db_session.refresh(tip)
    assert len(tip.attachments) == 2
    by_type = {}
    for attachment in tip.attachments:
        assert attachment.sealed_data_key is not None
        data, details = open_attachment(organisation, tip, attachment, settings)
        by_type[details["content_type"]] = (data, details)
    cleaned, details = by_type["image/jpeg"]
    assert details["metadata"] == "removed"
    assert b"CanaryCam" not in cleaned
    assert b"CANARY" not in cleaned
    assert not Image.open(io.BytesIO(cleaned)).getexif()
    pdf, details = by_type["application/pdf"]
    assert details["metadata"] == "not_removed"
    assert pdf == b"%PDF-1.7 author=Me"
    for path in settings.blobs_dir.iterdir():
        assert b"IMG_4032" not in path.read_bytes()

    # Moved to another tip by someone with write access to the database, a file no longer opens.
    moved = tip.attachments[0]
    with_other_tip = db_session.get_one(Tip, other_id)
    try:
        FOLLOWUP_ATTACHMENT_KEY.open(
            organisation.intake.private,
            moved.sealed_data_key or b"",
            row_id=attachment_row_id(with_other_tip.id, moved.id),
            key_version=1,
        )
    except DecryptionError:
        pass
    else:
        raise AssertionError("a follow-up file's key opened under another tip")


def test_files_sent_with_a_wrong_receipt_leave_nothing_behind(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    settings: Settings,
) -> None:
    make_tip(db_session, server_secrets)
    db_session.commit()
    before = blob_names(settings)
    response = intake_client.post(
        "/followup/files",
        data={"receipt": "0000-0000-0000-0000-0000-0000"},
        files=[("files", ("a.txt", b"evidence", "text/plain"))],
    )
    assert response.status_code == 401
    assert "No report matches this receipt" in response.text
    assert count(db_session, TipAttachment) == 0
    assert blob_names(settings) == before


def test_too_many_files_at_follow_up_are_refused_on_the_reports_page(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    settings: Settings,
) -> None:
    _, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    files = [("files", (f"{n}.txt", b"x", "text/plain")) for n in range(settings.max_files_per_tip + 1)]
    response = intake_client.post("/followup/files", data={"receipt": receipt}, files=files)
    assert response.status_code == 413
    assert "Too many files" in response.text
    assert "Your report" in response.text  # still on the report's page, receipt kept
    assert count(db_session, TipAttachment) == 0
    assert blob_names(settings) == set()


def test_deleting_asks_first_then_shreds_the_report_and_its_files(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    settings: Settings,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    assert (
        intake_client.post(
            "/followup/files",
            data={"receipt": receipt},
            files=[("files", ("a.txt", b"evidence", "text/plain"))],
        ).status_code
        == 201
    )
    assert len(blob_names(settings)) == 1

    asked = intake_client.post("/followup/delete", data={"receipt": receipt})
    assert asked.status_code == 200
    assert 'name="confirm" value="yes"' in asked.text
    assert db_session.get(Tip, tip_id) is not None

    deleted = intake_client.post("/followup/delete", data={"receipt": receipt, "confirm": "yes"})
    assert deleted.status_code == 200
    assert "Your report was deleted" in deleted.text
    db_session.expire_all()
    assert db_session.get(Tip, tip_id) is None
    assert count(db_session, TipAttachment) == 0
    assert blob_names(settings) == set()
    # Nothing of the submitter's action is logged: audit events carry exact times (DESIGN 5).
    assert db_session.scalars(select(AuditEvent).where(AuditEvent.object_id == str(tip_id))).all() == []
    assert intake_client.post("/followup", data={"receipt": receipt}).status_code == 401


def test_a_follow_up_form_from_another_site_is_refused(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    for path in ("/followup", "/followup/reply", "/followup/delete", "/followup/files"):
        response = intake_client.post(
            path,
            headers={"sec-fetch-site": "cross-site"},
            data={"receipt": receipt, "confirm": "yes", "body": "x"},
        )
        assert response.status_code == 403, path
    assert db_session.get(Tip, tip_id) is not None


def test_the_receipt_page_can_change_language_without_losing_the_receipt(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    _, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    page = intake_client.post("/receipt?lang=ug", data={"receipt": receipt})
    assert page.status_code == 200
    assert '<html lang="ug" dir="rtl">' in page.text
    assert "".join(receipt.split("-")) in page.text.replace('<span class="receipt-group">', "").replace(
        '</span><span class="receipt-dash">-</span>', ""
    ).replace("</span>", "")
    assert intake_client.post("/receipt", data={"receipt": str(uuid.uuid4())}).status_code == 401


def test_an_upload_without_a_content_type_is_a_clear_415_page(
    intake_client: TestClient, organisation: Organisation
) -> None:
    response = intake_client.post("/followup/files", content=b"receipt=x")
    assert response.status_code == 415
    assert "text/html" in response.headers["content-type"]


def test_a_deletion_whose_file_cannot_be_unlinked_still_deletes_and_unlinks_the_rest(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    assert (
        intake_client.post(
            "/followup/files",
            data={"receipt": receipt},
            files=[("files", ("a.txt", b"one", "text/plain")), ("files", ("b.txt", b"two", "text/plain"))],
        ).status_code
        == 201
    )
    blobs = intake_client.app.state.context.blobs  # type: ignore[attr-defined]
    real_delete = blobs.delete
    attempts: list[uuid.UUID] = []

    def failing_first(blob_id: uuid.UUID) -> None:
        attempts.append(blob_id)
        if len(attempts) == 1:
            raise PermissionError("read-only file system")
        real_delete(blob_id)

    monkeypatch.setattr(blobs, "delete", failing_first)
    deleted = intake_client.post("/followup/delete", data={"receipt": receipt, "confirm": "yes"})
    assert deleted.status_code == 200
    assert "Your report was deleted" in deleted.text
    assert len(attempts) == 2
    assert len(blob_names(settings)) == 1  # the one that failed; the other was unlinked
    db_session.expire_all()
    assert db_session.get(Tip, tip_id) is None
