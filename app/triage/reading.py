"""Reading one tip: the query that finds it for the caller, opening its sealed content, and the
view. Opening a tip also indexes it (blind-index tags for the queue filters) the first time a key
holder reads it, under a row lock taken before any audit append.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from app.audit_log import events as audit
from app.auth.accounts import usernames
from app.auth.principal import Principal
from app.cases.repository import (
    tip_readable_by,
    tips_readable_by,
    tips_visible_to,
)
from app.intake.duress import duress_flagged_on
from app.intake.integrity import followup_file_is_authentic, message_is_authentic
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
from app.kit.errors import NotFound
from app.stations.models import Station
from app.triage import tags
from app.triage.models import (
    NOTE_BODY,
    TipEvent,
    TipNote,
    TipTag,
    note_row_id,
)
from app.triage.schemas import (
    AttachmentSummary,
    DuplicateCandidate,
    NoteView,
    StaffMessage,
    TipDetail,
    TipEventView,
)
from app.triage.service import queue_item
from app.web import staff_words

logger = logging.getLogger("daylight.triage")


def open_tip(session: Session, principal: Principal, tip_id: uuid.UUID) -> tuple[Tip, bytes]:
    """A tip the caller may read, and its data key; NotFound for anything else."""
    tip = session.scalars(tip_readable_by(principal, tip_id)).first()
    intake_private = principal.intake_private_key(tip.intake_key_version) if tip else None
    if tip is None or intake_private is None:
        raise NotFound
    return tip, TIP_DATA_KEY.open(
        intake_private, tip.sealed_data_key, row_id=str(tip.id), key_version=tip.intake_key_version
    )


def read_tip(session: Session, principal: Principal, tip_id: uuid.UUID, *, integrity_key: bytes) -> TipDetail:
    tip, data_key = open_tip(session, principal, tip_id)
    clears_activity = tip.submitter_activity and tip.assignee_id in (None, principal.account_id)
    if not tip.indexed or clears_activity:
        # Locked and read again before writing to it: two members opening a new tip at once
        # must not both write its tags. Row locks come before the audit append in every
        # transaction (see the end of this function), so the two never wait on each other
        # in opposite orders.
        session.scalars(
            select(Tip).where(Tip.id == tip.id).with_for_update().execution_options(populate_existing=True)
        ).one()
    version = tip.content_key_version
    row_id = str(tip.id)
    answers = json.loads(
        TIP_ANSWERS.open(data_key, tip.answers_encrypted, row_id=row_id, key_version=version)
    )
    intake_private = principal.intake_private_key(tip.intake_key_version)
    if intake_private is None:
        # Read again under the lock: a key rotation moved the tip to a version this session
        # does not hold (yet; a new login does).
        raise NotFound
    tags.index_tip(session, tip, answers, intake_private)
    if tip.submitter_activity and tip.assignee_id in (None, principal.account_id):
        tip.submitter_activity = False  # seen by the member working on it
    session.flush()
    audit.record(session, principal.actor, "tip.read", object_type="tip", object_id=tip.id)
    attachments = []
    for attachment in tip.attachments:
        try:
            key, key_version = attachment_key(
                principal, tip, data_key, attachment, integrity_key=integrity_key
            )
        except ForgedRow:
            continue  # never listed; the alert is recorded
        details = json.loads(
            ATTACHMENT_DETAILS.open(
                key, attachment.details_encrypted, row_id=str(attachment.id), key_version=key_version
            )
        )
        attachments.append(
            AttachmentSummary(
                id=attachment.id,
                size=details["size"],
                content_type=details["content_type"],
                added_on=attachment.added_on,
                # Files from before metadata stripping existed carry no mark: treat them as not cleaned.
                metadata_removed=details.get("metadata") == "removed",
                not_cleaned=details.get("not_cleaned"),
            )
        )
    messages = [
        _open_message(principal, message)
        for message in tip.messages
        if _authentic_or_alert(session, principal, message, integrity_key)
    ]
    notes = list(
        session.scalars(
            select(TipNote).where(TipNote.tip_id == tip.id).order_by(TipNote.written_on, TipNote.id)
        )
    )
    history = list(
        session.scalars(select(TipEvent).where(TipEvent.tip_id == tip.id).order_by(TipEvent.position))
    )
    names = usernames(
        session,
        {
            tip.assignee_id,
            tip.verification_proposed_by_id,
            *(note.author_id for note in notes),
            *(event.actor_id for event in history),
        },
    )
    return TipDetail(
        **queue_item(tip, len(attachments), len(messages), names).model_dump(),
        narrative=TIP_NARRATIVE.open(
            data_key, tip.narrative_encrypted, row_id=row_id, key_version=version
        ).decode(),
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
        referral_form=answers.get("referral_form"),
        duplicate_of=_visible_or_none(session, principal, tip.duplicate_of_id),
        verification_proposed_by=names.get(tip.verification_proposed_by_id)
        if tip.verification_proposed_by_id
        else None,
        duress_flagged_on=duress_flagged_on(session, tip.id),
        attachments=attachments,
        messages=messages,
        notes=[_note_view(note, data_key, version, names) for note in notes],
        history=[
            TipEventView(
                action=event.action,
                from_status=event.from_status,
                to_status=event.to_status,
                actor=names.get(event.actor_id) if event.actor_id else None,
                detail=event.detail,
                happened_on=event.happened_on,
            )
            for event in history
        ],
    )


def _visible_or_none(session: Session, principal: Principal, tip_id: uuid.UUID | None) -> uuid.UUID | None:
    """A linked tip's id, only when it exists for the viewer (it may sit in a restricted case)."""
    if tip_id is None:
        return None
    return session.scalar(tips_visible_to(principal).with_only_columns(Tip.id).where(Tip.id == tip_id))


def _note_view(note: TipNote, data_key: bytes, version: int, names: dict[uuid.UUID, str]) -> NoteView:
    body = NOTE_BODY.open(
        data_key, note.body_encrypted, row_id=note_row_id(note.tip_id, note.id), key_version=version
    )
    return NoteView(
        id=note.id,
        author=names.get(note.author_id) if note.author_id else None,
        written_on=note.written_on,
        body=body.decode(),
    )


DUPLICATE_WINDOW = dt.timedelta(days=90)
DUPLICATE_LIMIT = 10


def duplicate_candidates(
    session: Session, principal: Principal, tip_id: uuid.UUID
) -> list[DuplicateCandidate]:
    """Tips that may report the same events: same station or city, an overlapping tactic, received
    within 90 days. Matched on blind-index tags (every tip the queue has indexed).
    Suggestions only: nothing is ever merged."""
    tip, data_key = open_tip(session, principal, tip_id)
    audit.record(session, principal.actor, "tip.duplicates", object_type="tip", object_id=tip.id)
    answers = json.loads(
        TIP_ANSWERS.open(
            data_key, tip.answers_encrypted, row_id=str(tip.id), key_version=tip.content_key_version
        )
    )
    labels = tags.labels_of(answers)
    places = [(kind, value) for kind, value in labels if kind in ("city", "station")]
    tactics = [(kind, value) for kind, value in labels if kind == "tactic"]
    if not places or not tactics:
        return []
    by_tag: dict[bytes, str] = {}
    for kind, value in places + tactics:
        for tag_value in tags.tags_for(principal, kind, [value]):
            by_tag[tag_value] = _shared_words(session, kind, value)
    tactic_words = {_shared_words(session, kind, value) for kind, value in tactics}
    place_tags = [t for t, label in by_tag.items() if label not in tactic_words]
    tactic_tags = [t for t, label in by_tag.items() if label in tactic_words]
    candidates = list(
        session.scalars(
            tips_readable_by(principal)
            .where(
                Tip.id != tip.id,
                Tip.received_on.between(
                    tip.received_on - DUPLICATE_WINDOW, tip.received_on + DUPLICATE_WINDOW
                ),
                Tip.id.in_(select(TipTag.tip_id).where(TipTag.tag.in_(place_tags))),
                Tip.id.in_(select(TipTag.tip_id).where(TipTag.tag.in_(tactic_tags))),
            )
            .order_by(Tip.received_on.desc(), Tip.id)
            .limit(DUPLICATE_LIMIT)
        )
    )
    shared: dict[uuid.UUID, list[str]] = {candidate.id: [] for candidate in candidates}
    if candidates:
        for candidate_id, tag_value in session.execute(
            select(TipTag.tip_id, TipTag.tag).where(
                TipTag.tip_id.in_(list(shared)), TipTag.tag.in_(list(by_tag))
            )
        ):
            shared[candidate_id].append(by_tag[tag_value])
    return [
        DuplicateCandidate(
            id=candidate.id,
            ref=candidate.ref,
            status=candidate.status.value,
            received_on=candidate.received_on,
            shared=sorted(shared[candidate.id]),
        )
        for candidate in candidates
    ]


def _shared_words(session: Session, kind: str, value: str) -> str:
    """What two reports share, as the member reads it: never a code or a station's id."""
    if kind == "tactic":
        return f"tactic: {staff_words.tactic_words(value)}"
    if kind == "station":
        station = session.get(Station, uuid.UUID(value))
        return f"station: {station.described if station else 'a station no longer listed'}"
    return f"{kind}: {value}"


class ForgedRow(NotFound):
    """A row the server did not write (its MAC fails): treated as absent, and alerted."""


def record_integrity_alert(
    session: Session, principal: Principal, record: str, row_id: uuid.UUID, tip_id: uuid.UUID
) -> None:
    """An audit event for admins and auditors: someone wrote a row into the database that the
    server never wrote. Logged too, for whoever watches the service's log."""
    logger.error("integrity alert: a %s row of a tip failed its MAC and was not shown", record)
    audit.record(
        session,
        principal.actor,
        "integrity.alert",
        object_type=record,
        object_id=row_id,
        outcome=audit.Outcome.FAILURE,
        details={"tip": str(tip_id)},
    )


def _authentic_or_alert(
    session: Session, principal: Principal, message: TipMessage, integrity_key: bytes
) -> bool:
    if message_is_authentic(integrity_key, message):
        return True
    record_integrity_alert(session, principal, "tip_message", message.id, message.tip_id)
    return False


def attachment_key(
    principal: Principal, tip: Tip, tip_data_key: bytes, attachment: TipAttachment, *, integrity_key: bytes
) -> tuple[bytes, int]:
    """The data key of an attachment and the key version its content is bound to: the tip's,
    or for a file added at follow-up its own, sealed to the intake key and bound to this tip."""
    if (
        attachment.sealed_data_key is None
        or attachment.intake_key_version is None
        or attachment.content_key_version is None
    ):
        return tip_data_key, tip.content_key_version
    intake_private = principal.intake_private_key(attachment.intake_key_version)
    if intake_private is None:
        raise NotFound
    key = FOLLOWUP_ATTACHMENT_KEY.open(
        intake_private,
        attachment.sealed_data_key,
        row_id=attachment_row_id(tip.id, attachment.id),
        key_version=attachment.intake_key_version,
    )
    if not followup_file_is_authentic(integrity_key, tip.id, attachment.id, key, attachment.row_mac):
        # Its key is sealed to the intake *public* key: anyone who can write the database
        # could have made it. A file for staff to open is exactly what an attacker would plant.
        session = object_session(attachment)
        if session is not None:
            record_integrity_alert(session, principal, "tip_attachment", attachment.id, tip.id)
        raise ForgedRow
    return key, attachment.content_key_version


def _open_message(principal: Principal, message: TipMessage) -> StaffMessage:
    row_id = message_row_id(message.tip_id, message.id)
    intake_private = principal.intake_private_key(message.intake_key_version)
    if intake_private is None:
        raise NotFound
    data_key = MESSAGE_DATA_KEY.open(
        intake_private, message.sealed_data_key, row_id=row_id, key_version=message.intake_key_version
    )
    body = MESSAGE_BODY.open(
        data_key, message.body_encrypted, row_id=row_id, key_version=message.content_key_version
    )
    return StaffMessage(id=message.id, author=message.author, sent_on=message.sent_on, body=body.decode())
