"""Reading tips for staff: decryption happens here, for one tip at a time."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import events as audit
from app.auth.service import Principal
from app.errors import NotFound
from app.intake.models import (
    ATTACHMENT_DETAILS,
    FOLLOWUP_ATTACHMENT_KEY,
    MESSAGE_BODY,
    MESSAGE_DATA_KEY,
    TIP_ANSWERS,
    TIP_DATA_KEY,
    TIP_NARRATIVE,
    Tip,
    TipAttachment,
    TipMessage,
    attachment_row_id,
    message_row_id,
)
from app.triage.repository import tip_readable_by, tips_visible_to
from app.triage.schemas import AttachmentSummary, QueueItem, QueuePage, StaffMessage, TipDetail

QUEUE_PAGE_LIMIT = 200


def _count_by_tip(session: Session, model: type[TipAttachment] | type[TipMessage],
                  tip_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not tip_ids:
        return {}
    rows = session.execute(
        select(model.tip_id, func.count()).where(model.tip_id.in_(tip_ids)).group_by(model.tip_id)
    )
    return {tip_id: int(count) for tip_id, count in rows}


def _queue_item(tip: Tip, attachments: int, messages: int) -> QueueItem:
    return QueueItem(id=tip.id, ref=tip.ref, status=tip.status, urgent=tip.urgent,
                     received_on=tip.received_on, last_activity_on=tip.last_activity_on,
                     attachment_count=attachments, message_count=messages)


def list_queue(session: Session, principal: Principal) -> QueuePage:
    """Urgent first, then oldest first; metadata only, nothing is decrypted."""
    tips = list(session.scalars(
        tips_visible_to(principal)
        .order_by(Tip.urgent.desc(), Tip.received_on.asc(), Tip.ref.asc())
        .limit(QUEUE_PAGE_LIMIT)
    ))
    tip_ids = [tip.id for tip in tips]
    audit.record(session, principal.actor, "tips.list", details={"count": len(tips)})
    attachments = _count_by_tip(session, TipAttachment, tip_ids)
    messages = _count_by_tip(session, TipMessage, tip_ids)
    return QueuePage(items=[
        _queue_item(tip, attachments.get(tip.id, 0), messages.get(tip.id, 0)) for tip in tips
    ])


def open_tip(session: Session, principal: Principal, tip_id: uuid.UUID) -> tuple[Tip, bytes]:
    """A tip the caller may read, and its data key; NotFound for anything else."""
    tip = session.scalars(tip_readable_by(principal, tip_id)).first()
    intake_private = principal.intake_private_key(tip.intake_key_version) if tip else None
    if tip is None or intake_private is None:
        raise NotFound
    return tip, TIP_DATA_KEY.open(intake_private, tip.sealed_data_key, row_id=str(tip.id),
                                  key_version=tip.intake_key_version)


def read_tip(session: Session, principal: Principal, tip_id: uuid.UUID) -> TipDetail:
    tip, data_key = open_tip(session, principal, tip_id)
    audit.record(session, principal.actor, "tip.read", object_type="tip", object_id=tip.id)
    version = tip.intake_key_version
    row_id = str(tip.id)
    answers = json.loads(TIP_ANSWERS.open(data_key, tip.answers_encrypted, row_id=row_id,
                                          key_version=version))
    attachments = []
    for attachment in tip.attachments:
        key, key_version = attachment_key(principal, tip, data_key, attachment)
        details = json.loads(ATTACHMENT_DETAILS.open(key, attachment.details_encrypted,
                                                     row_id=str(attachment.id), key_version=key_version))
        attachments.append(AttachmentSummary(
            id=attachment.id, size=details["size"], content_type=details["content_type"],
            added_on=attachment.added_on,
            # Files from before metadata stripping existed carry no mark: treat them as not cleaned.
            metadata_removed=details.get("metadata") == "removed"))
    messages = [_open_message(principal, message) for message in tip.messages]
    return TipDetail(
        **_queue_item(tip, len(attachments), len(messages)).model_dump(),
        narrative=TIP_NARRATIVE.open(data_key, tip.narrative_encrypted, row_id=row_id,
                                     key_version=version).decode(),
        language=answers["language"],
        tactics=answers["tactics"],
        host_country=answers["host_country"],
        host_city=answers["host_city"],
        station_id=answers["station_id"],
        # Answers added to the form later: tips sent before have none of them.
        incident_month=answers.get("incident_month"),
        incident_year=answers.get("incident_year"),
        ongoing=answers.get("ongoing", False),
        perpetrators=answers.get("perpetrators", []),
        contact_preference=answers.get("contact_preference", "receipt_only"),
        contact_details=answers.get("contact_details"),
        referral_consent=answers.get("referral_consent"),
        attachments=attachments,
        messages=messages,
    )


def attachment_key(principal: Principal, tip: Tip, tip_data_key: bytes,
                   attachment: TipAttachment) -> tuple[bytes, int]:
    """The data key of an attachment and its key version: the tip's, or for a file added at
    follow-up its own, sealed to the intake key and bound to this tip."""
    if attachment.sealed_data_key is None or attachment.intake_key_version is None:
        return tip_data_key, tip.intake_key_version
    intake_private = principal.intake_private_key(attachment.intake_key_version)
    if intake_private is None:
        raise NotFound
    key = FOLLOWUP_ATTACHMENT_KEY.open(intake_private, attachment.sealed_data_key,
                                       row_id=attachment_row_id(tip.id, attachment.id),
                                       key_version=attachment.intake_key_version)
    return key, attachment.intake_key_version


def _open_message(principal: Principal, message: TipMessage) -> StaffMessage:
    row_id = message_row_id(message.tip_id, message.id)
    version = message.intake_key_version
    intake_private = principal.intake_private_key(version)
    if intake_private is None:
        raise NotFound
    data_key = MESSAGE_DATA_KEY.open(intake_private, message.sealed_data_key, row_id=row_id,
                                     key_version=version)
    body = MESSAGE_BODY.open(data_key, message.body_encrypted, row_id=row_id, key_version=version)
    return StaffMessage(id=message.id, author=message.author, sent_on=message.sent_on,
                        body=body.decode())
