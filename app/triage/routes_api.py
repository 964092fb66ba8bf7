"""The queue and tip reading. Scoped queries decide what exists for the caller."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from app.audit import events as audit
from app.auth.deps import CurrentStaff, QueueReader
from app.crypto.errors import DecryptionError
from app.errors import IntegrityFailure, NotFound
from app.intake.models import ATTACHMENT_BLOB
from app.triage import service
from app.triage.schemas import QueuePage, TipDetail
from app.web.context import Context, DbSession

router = APIRouter(prefix="/api/v1/tips")

# Reading one tip needs only a session: the scoped query is the authority, and
# a role that may not read content finds nothing (404), as if the tip did not exist.
ContentReader = CurrentStaff


@router.get("", response_model=QueuePage)
def list_tips(principal: QueueReader, session: DbSession) -> QueuePage:
    return service.list_queue(session, principal)


@router.get("/{tip_id}", response_model=TipDetail)
def read_tip(tip_id: uuid.UUID, principal: ContentReader, session: DbSession) -> TipDetail:
    try:
        return service.read_tip(session, principal, tip_id)
    except DecryptionError:
        raise IntegrityFailure from None


@router.get("/{tip_id}/attachments/{attachment_id}")
def download_attachment(tip_id: uuid.UUID, attachment_id: uuid.UUID, principal: ContentReader,
                        session: DbSession, context: Context) -> StreamingResponse:
    try:
        tip, data_key = service.open_tip(session, principal, tip_id)
    except DecryptionError:
        raise IntegrityFailure from None
    attachment = next((attachment for attachment in tip.attachments if attachment.id == attachment_id), None)
    if attachment is None:
        raise NotFound
    try:
        key, key_version = service.attachment_key(principal, tip, data_key, attachment)
    except DecryptionError:
        raise IntegrityFailure from None
    audit.record(session, principal.actor, "tip.attachment_download", object_type="attachment",
                 object_id=attachment_id, details={"tip": str(tip.id)})
    source = context.blobs.open(attachment_id)

    def plaintext() -> Iterator[bytes]:
        # A tampered or truncated blob raises mid-stream and the connection is
        # cut: the reader never receives a complete-looking file.
        with source:
            yield from ATTACHMENT_BLOB.decrypt_chunks(source, key, row_id=str(attachment_id),
                                                      key_version=key_version)

    return StreamingResponse(plaintext(), media_type="application/octet-stream",
                             headers={"content-disposition": "attachment"})

