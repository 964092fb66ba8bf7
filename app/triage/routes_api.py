"""The queue and tip reading. Scoped queries decide what exists for the caller."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from app.audit_log import events as audit
from app.auth.deps import CurrentStaff, Lead, QueueReader, Triager
from app.crypto.errors import DecryptionError
from app.intake.models import ATTACHMENT_BLOB
from app.kit.errors import IntegrityFailure, NotFound, error_body, error_responses
from app.triage import reading, service, workflow
from app.triage.schemas import (
    AssignRequest,
    DuplicateCandidate,
    NoteRequest,
    NoteView,
    QueueFilters,
    QueueItem,
    QueuePage,
    RejectRequest,
    StaffMessageRequest,
    TipDetail,
)
from app.web.context import Context, DbSession
from app.web.json_body import JsonBody

router = APIRouter(prefix="/api/v1/tips", responses=error_responses(401, 403, 404, 409, 500, 503, 507))

# Reading one tip needs only a session: the scoped query is the authority, and
# a role that may not read content finds nothing (404), as if the tip did not exist.
ContentReader = CurrentStaff


@router.get("", response_model=QueuePage)
def list_tips(
    principal: QueueReader, session: DbSession, context: Context, filters: Annotated[QueueFilters, Query()]
) -> QueuePage:
    """The queue, filtered or searched (`q`) over every report the caller may see, opened or not."""
    try:
        return service.list_queue(
            session, principal, filters, integrity_key=context.secrets.key_integrity_key
        )
    except DecryptionError:
        raise IntegrityFailure from None


@router.get("/{tip_id}", response_model=TipDetail)
def read_tip(tip_id: uuid.UUID, principal: ContentReader, session: DbSession, context: Context) -> TipDetail:
    try:
        return reading.read_tip(session, principal, tip_id, integrity_key=context.secrets.key_integrity_key)
    except DecryptionError:
        raise IntegrityFailure from None


# The file as it was uploaded (decrypted while it streams), never rendered by the browser.
ATTACHMENT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {"schema": {"type": "string"}}}}
}


@router.get(
    "/{tip_id}/attachments/{attachment_id}", response_class=StreamingResponse, responses=ATTACHMENT_CONTENT
)
def download_attachment(
    tip_id: uuid.UUID,
    attachment_id: uuid.UUID,
    principal: ContentReader,
    session: DbSession,
    context: Context,
) -> Response:
    try:
        tip, data_key = reading.open_tip(session, principal, tip_id)
    except DecryptionError:
        raise IntegrityFailure from None
    attachment = next((attachment for attachment in tip.attachments if attachment.id == attachment_id), None)
    if attachment is None:
        raise NotFound
    try:
        key, key_version = reading.attachment_key(
            principal, tip, data_key, attachment, integrity_key=context.secrets.key_integrity_key
        )
    except DecryptionError:
        raise IntegrityFailure from None
    except reading.ForgedRow:
        # Returned, not raised: the integrity alert must commit with this answer.
        return JSONResponse(error_body(NotFound.code, NotFound.public_message), status_code=404)
    audit.record(
        session,
        principal.actor,
        "tip.attachment_download",
        object_type="attachment",
        object_id=attachment_id,
        details={"tip": str(tip.id)},
    )
    source = context.blobs.open(attachment_id)

    def plaintext() -> Iterator[bytes]:
        # A tampered or truncated blob raises mid-stream and the connection is
        # cut: the reader never receives a complete-looking file.
        with contextlib.closing(source):
            yield from ATTACHMENT_BLOB.decrypt_chunks(
                source, key, row_id=str(attachment_id), key_version=key_version
            )

    return StreamingResponse(
        plaintext(), media_type="application/octet-stream", headers={"content-disposition": "attachment"}
    )


# --- The workflow (app/triage/workflow.py holds every rule) -------------------------------------------


@router.post("/{tip_id}/claim", response_model=QueueItem)
def claim(tip_id: uuid.UUID, principal: Triager, session: DbSession) -> QueueItem:
    return service.queue_item_of(session, workflow.claim(session, principal, tip_id))


@router.post("/{tip_id}/release", response_model=QueueItem)
def release(tip_id: uuid.UUID, principal: Triager, session: DbSession) -> QueueItem:
    return service.queue_item_of(session, workflow.release(session, principal, tip_id))


@router.post("/{tip_id}/assign", response_model=QueueItem)
def assign(
    tip_id: uuid.UUID, principal: Lead, session: DbSession, body: JsonBody[AssignRequest]
) -> QueueItem:
    return service.queue_item_of(session, workflow.assign(session, principal, tip_id, body.assignee_id))


@router.post("/{tip_id}/messages", response_model=QueueItem, status_code=201)
def send_message(
    tip_id: uuid.UUID,
    principal: Triager,
    session: DbSession,
    context: Context,
    body: JsonBody[StaffMessageRequest],
) -> QueueItem:
    tip = workflow.send_message(
        session, principal, tip_id, body.body, question=body.question, server_secrets=context.secrets
    )
    return service.queue_item_of(session, tip)


@router.post("/{tip_id}/verification", response_model=QueueItem)
def propose_verification(tip_id: uuid.UUID, principal: Triager, session: DbSession) -> QueueItem:
    return service.queue_item_of(session, workflow.propose_verification(session, principal, tip_id))


@router.post("/{tip_id}/verification/confirm", response_model=QueueItem)
def confirm_verification(tip_id: uuid.UUID, principal: Triager, session: DbSession) -> QueueItem:
    """Who may confirm is the organisation's review policy: the service decides (403/409)."""
    return service.queue_item_of(session, workflow.confirm_verification(session, principal, tip_id))


@router.post("/{tip_id}/reject", response_model=QueueItem)
def reject(
    tip_id: uuid.UUID, principal: Triager, session: DbSession, body: JsonBody[RejectRequest]
) -> QueueItem:
    tip = workflow.reject(session, principal, tip_id, body.reason, body.duplicate_of)
    return service.queue_item_of(session, tip)


@router.post("/{tip_id}/notes", response_model=NoteView, status_code=201)
def add_note(
    tip_id: uuid.UUID, principal: Triager, session: DbSession, body: JsonBody[NoteRequest]
) -> NoteView:
    try:
        tip, data_key = reading.open_tip(session, principal, tip_id)
    except DecryptionError:
        raise IntegrityFailure from None
    note = workflow.add_note(session, principal, tip.id, body.body, data_key)
    return NoteView(id=note.id, author=principal.username, written_on=note.written_on, body=body.body)


@router.get("/{tip_id}/duplicates", response_model=list[DuplicateCandidate])
def duplicates(tip_id: uuid.UUID, principal: ContentReader, session: DbSession) -> list[DuplicateCandidate]:
    try:
        return reading.duplicate_candidates(session, principal, tip_id)
    except DecryptionError:
        raise IntegrityFailure from None
