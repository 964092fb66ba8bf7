"""Documents sent with a report or at follow-up reach staff cleaned of their metadata
(app.intake.attachments, app.intake.cleaning.documents); those the cleaner cannot read in its
bounds are stored exactly as sent, and staff are told why."""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from typing import NoReturn

import pikepdf
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.intake.cleaning import documents
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import login
from tests.conftest import Organisation, intake_client_with
from tests.intake.factories import make_tip
from tests.intake.test_document_cleaning import (
    CAMERA,
    CANARY,
    DOCX,
    assert_clean_package,
    gps_photo,
    identifying_docx,
    identifying_pdf,
    images_of,
    pdf_values,
)

PDF = "application/pdf"


@pytest.fixture(scope="module")
def photo() -> bytes:
    return gps_photo()


def sent_and_downloaded(
    intake_client: TestClient,
    staff_client: TestClient,
    organisation: Organisation,
    files: list[tuple[str, bytes, str]],
) -> list[tuple[dict[str, object], bytes]]:
    """A report with ``files``, as a caseworker then sees and downloads them."""
    narrative = f"documents {len(files)} {files[0][0]}"
    sent = intake_client.post(
        "/api/v1/tips",
        data={"narrative": narrative},
        files=[("files", file) for file in files],
    )
    assert sent.status_code == 201, sent.text
    assert login(staff_client, organisation[Role.CASEWORKER]).status_code == 200
    for item in staff_client.get("/api/v1/tips").json()["items"]:
        tip = staff_client.get(f"/api/v1/tips/{item['id']}").json()
        if tip["narrative"] == narrative:
            break
    else:
        raise AssertionError("the report is not in the queue")
    return [
        (attachment, staff_client.get(f"/api/v1/tips/{tip['id']}/attachments/{attachment['id']}").content)
        for attachment in tip["attachments"]
    ]


def test_a_pdf_reaches_staff_without_its_author_photo_location_or_scripts(
    intake_client: TestClient, staff_client: TestClient, organisation: Organisation, photo: bytes
) -> None:
    original = identifying_pdf(photo)
    [(attachment, stored)] = sent_and_downloaded(
        intake_client, staff_client, organisation, [("letter.pdf", original, "application/octet-stream")]
    )
    assert attachment["metadata_removed"] is True
    assert attachment["not_cleaned"] is None
    assert attachment["content_type"] == PDF
    assert attachment["size"] == len(stored)
    for canary in (CANARY.encode(), CAMERA.encode(), b"JavaScript", b"Exif"):
        assert canary not in stored
    with pikepdf.open(io.BytesIO(stored)) as pdf:
        assert len(pdf.pages) == 2
        assert not any(CANARY.encode() in value for value in pdf_values(pdf))
        pictures = images_of(pdf)
        assert pictures, "the photo is still on the page"
        for picture in pictures:
            assert not Image.open(io.BytesIO(picture)).getexif()


def test_an_office_document_reaches_staff_without_its_author(
    intake_client: TestClient, staff_client: TestClient, organisation: Organisation, photo: bytes
) -> None:
    [(attachment, stored)] = sent_and_downloaded(
        intake_client, staff_client, organisation, [("statement.docx", identifying_docx(photo), DOCX)]
    )
    assert attachment["metadata_removed"] is True
    assert attachment["content_type"] == DOCX
    assert_clean_package(stored)


def test_documents_the_cleaner_cannot_read_are_stored_exactly_as_sent_and_staff_told_why(
    intake_client: TestClient, staff_client: TestClient, organisation: Organisation
) -> None:
    locked = io.BytesIO()
    with pikepdf.new() as pdf:
        pdf.add_blank_page()
        pdf.docinfo[pikepdf.Name.Author] = CANARY
        pdf.save(locked, encryption=pikepdf.Encryption(user="secret", owner="secret"))
    garbage = b"%PDF-1.7\n" + b"\x00not a pdf at all" * 100
    recording = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 64  # an MP3's tag header
    files = [
        ("locked.pdf", locked.getvalue(), PDF),
        ("broken.pdf", garbage, PDF),
        ("call.mp3", recording, "audio/mpeg"),
    ]
    downloaded = sent_and_downloaded(intake_client, staff_client, organisation, files)
    by_content = {stored: attachment for attachment, stored in downloaded}
    assert set(by_content) == {locked.getvalue(), garbage, recording}, "each kept byte for byte"
    assert by_content[locked.getvalue()]["not_cleaned"] == "encrypted"
    assert by_content[garbage]["not_cleaned"] == "unreadable"
    assert by_content[recording]["not_cleaned"] is None  # a kind the service never cleans
    assert not any(attachment["metadata_removed"] for attachment in by_content.values())


@pytest.fixture
def small_document_limit(settings: Settings, database: Database) -> Iterator[TestClient]:
    limited = settings.model_copy(update={"max_document_clean_bytes": 4096})
    with intake_client_with(limited, database) as client:
        yield client


def test_a_document_larger_than_the_cleaning_limit_streams_through_as_sent(
    small_document_limit: TestClient,
    staff_client: TestClient,
    organisation: Organisation,
    photo: bytes,
) -> None:
    original = identifying_pdf(photo)
    assert len(original) > 4096
    [(attachment, stored)] = sent_and_downloaded(
        small_document_limit, staff_client, organisation, [("big.pdf", original, PDF)]
    )
    assert stored == original
    assert attachment["metadata_removed"] is False
    assert attachment["not_cleaned"] == "too large to clean"


def test_a_pdf_added_at_follow_up_is_cleaned_too(
    intake_client: TestClient,
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    photo: bytes,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    added = intake_client.post(
        "/followup/files",
        data={"receipt": receipt},
        files=[("files", ("scan.pdf", identifying_pdf(photo), PDF))],
    )
    assert added.status_code == 201
    assert login(staff_client, organisation[Role.CASEWORKER]).status_code == 200
    [attachment] = staff_client.get(f"/api/v1/tips/{tip_id}").json()["attachments"]
    assert attachment["metadata_removed"] is True
    stored = staff_client.get(f"/api/v1/tips/{tip_id}/attachments/{attachment['id']}").content
    assert CANARY.encode() not in stored
    assert CAMERA.encode() not in stored
    page = staff_client.get(f"/tips/{tip_id}")
    assert "metadata removed" in page.text


def test_a_cleaner_that_cannot_start_keeps_the_upload_as_sent_not_a_500(
    intake_client: TestClient,
    staff_client: TestClient,
    organisation: Organisation,
    photo: bytes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_more_processes(*args: object, **kwargs: object) -> NoReturn:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(documents.subprocess, "Popen", no_more_processes)
    original = identifying_pdf(photo)
    [(attachment, stored)] = sent_and_downloaded(
        intake_client, staff_client, organisation, [("letter.pdf", original, PDF)]
    )
    assert stored == original
    assert attachment["not_cleaned"] == "the cleaner did not run"
