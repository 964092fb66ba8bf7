"""Reading tips for staff: decryption happens here, for one tip at a time."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, CompoundSelect, Select, func, literal, select, tuple_, union_all
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.auth.permissions import Permission
from app.auth.service import Principal
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
    TipStatus,
    attachment_row_id,
    message_row_id,
)
from app.kit.errors import InvalidInput, NotFound
from app.triage import tags
from app.triage.models import (
    NO_ASSIGNEE,
    NO_TAG,
    NOTE_BODY,
    TipEvent,
    TipNote,
    TipQueueCount,
    TipQueueCountChange,
    TipTag,
    note_row_id,
)
from app.triage.repository import (
    fold_queue_count_changes,
    tip_ids_hidden_in_queue_from,
    tip_readable_by,
    tips_readable_by,
    tips_visible_to,
)
from app.triage.schemas import (
    AttachmentSummary,
    DuplicateCandidate,
    NoteView,
    QueueFilters,
    QueueItem,
    QueuePage,
    StaffMessage,
    TipDetail,
    TipEventView,
)


def _count_by_tip(
    session: Session, model: type[TipAttachment] | type[TipMessage], tip_ids: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not tip_ids:
        return {}
    rows = session.execute(
        select(model.tip_id, func.count()).where(model.tip_id.in_(tip_ids)).group_by(model.tip_id)
    )
    return {tip_id: int(count) for tip_id, count in rows}


def _usernames(session: Session, account_ids: set[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    ids = [account_id for account_id in account_ids if account_id is not None]
    if not ids:
        return {}
    names = select(StaffAccount.id, StaffAccount.username).where(StaffAccount.id.in_(ids))
    return dict(session.execute(names).all())


def _queue_item(tip: Tip, attachments: int, messages: int, names: dict[uuid.UUID, str]) -> QueueItem:
    return QueueItem(
        id=tip.id,
        ref=tip.ref,
        status=tip.status,
        urgent=tip.urgent,
        received_on=tip.received_on,
        last_activity_on=tip.last_activity_on,
        attachment_count=attachments,
        message_count=messages,
        assignee=names.get(tip.assignee_id) if tip.assignee_id else None,
        verification_proposed=tip.verification_proposed_by_id is not None,
        submitter_activity=tip.submitter_activity,
        rejection_reason=tip.rejection_reason.value if tip.rejection_reason else None,
    )


FilteredSelect = TypeVar("FilteredSelect", bound=Select[*tuple[Any, ...]])  # any row shape


def queue_item_of(session: Session, tip: Tip) -> QueueItem:
    """One tip's queue metadata (the answer to a workflow action)."""
    session.flush()
    attachments = _count_by_tip(session, TipAttachment, [tip.id]).get(tip.id, 0)
    messages = _count_by_tip(session, TipMessage, [tip.id]).get(tip.id, 0)
    return _queue_item(tip, attachments, messages, _usernames(session, {tip.assignee_id}))


class BadCursor(InvalidInput):
    public_message = "The page cursor is not valid; start again from the first page."


def _encode_cursor(tip: Tip) -> str:
    raw = f"{int(tip.urgent)}|{tip.received_on.isoformat()}|{tip.id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[bool, dt.date, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        urgent, received_on, tip_id = raw.split("|")
        if urgent not in ("0", "1"):
            raise ValueError(urgent)
        return urgent == "1", dt.date.fromisoformat(received_on), uuid.UUID(hex=tip_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor(fields=[{"field": "cursor", "message": "not a cursor this service issued"}]) from None


def _filtered(statement: FilteredSelect, principal: Principal, filters: QueueFilters) -> FilteredSelect:
    """The queue's filters on any statement over Tip; tactic and country through blind-index tags.
    `_counter_conditions` and `_facets` say the same of the queue counters: change them together."""
    if filters.assignee is not None:
        statement = statement.where(Tip.assignee_id == filters.assignee)
    if filters.mine:
        statement = statement.where(Tip.assignee_id == principal.account_id)
    if filters.unassigned:
        statement = statement.where(Tip.assignee_id.is_(None))
    if filters.urgent is not None:
        statement = statement.where(Tip.urgent.is_(filters.urgent))
    for kind, value in (("tactic", filters.tactic), ("country", filters.country)):
        if value is not None:
            wanted = tags.tags_for(principal, kind, [str(value)])
            statement = statement.where(Tip.id.in_(select(TipTag.tip_id).where(TipTag.tag.in_(wanted))))
    return statement


QueueCounter = type[TipQueueCount] | type[TipQueueCountChange]


def _counter_conditions(
    counter: QueueCounter, principal: Principal, filters: QueueFilters
) -> list[ColumnElement[bool]]:
    """`_filtered`'s workflow filters, on the queue counters' key."""
    conditions: list[ColumnElement[bool]] = []
    if filters.assignee is not None:
        conditions.append(counter.assignee_key == filters.assignee)
    if filters.mine:
        conditions.append(counter.assignee_key == principal.account_id)
    if filters.unassigned:
        conditions.append(counter.assignee_key == NO_ASSIGNEE)
    if filters.urgent is not None:
        conditions.append(counter.urgent.is_(filters.urgent))
    return conditions


def _facets(principal: Principal, filters: QueueFilters) -> list[tuple[bytes, bytes]]:
    """The counter facets that together count the tips `_filtered`'s tag filters select: all
    tips, the tips with a tag, or with both tags of a pair; one per intake key version the
    caller holds. Their sum is exact because a tip's tags are all written under one version
    (`tags.index_tip` writes them once, a rotation replaces them all), so a tip has at most
    one of these facets. Empty when the caller holds no key: no tag, no tip."""
    tactic = tags.tags_for(principal, "tactic", [str(filters.tactic)]) if filters.tactic is not None else None
    country = tags.tags_for(principal, "country", [filters.country]) if filters.country is not None else None
    if tactic is None and country is None:
        return [(NO_TAG, NO_TAG)]
    if tactic is None or country is None:
        return [(tag, NO_TAG) for tag in tactic or country or []]
    return [(min(first, second), max(first, second)) for first in tactic for second in country]


def _status_counts(session: Session, principal: Principal, filters: QueueFilters) -> dict[str, int]:
    """Tips per status among those the caller may see, with the page's filters but status.

    Not a count over `tips`, which grows with every submission: the counters the triggers
    keep for every tip (folded first, and the changes not folded yet added), minus the tips
    in restricted cases hidden from this caller, looked up one by one (they grow with the
    restricted cases, not with the queue). One statement, so all three are read from one
    snapshot.
    """
    counts = {status.value: 0 for status in TipStatus}
    facets = _facets(principal, filters)
    if not principal.can(Permission.VIEW_QUEUE) or not facets:
        return counts
    fold_queue_count_changes(session)
    counted = [
        select(counter.status.label("status"), amount.label("tips")).where(
            tuple_(counter.first_tag, counter.second_tag).in_(facets),
            *_counter_conditions(counter, principal, filters),
        )
        for counter, amount in (
            (TipQueueCount, TipQueueCount.tip_count),
            (TipQueueCountChange, TipQueueCountChange.change),
        )
    ]
    # Driven from the hidden ids, one lookup by primary key each (a correlated subquery, the
    # filters inside): started from `tips` instead, a filter such as `mine` could have the
    # planner read every tip assigned to the caller to find the few hidden ones.
    hidden_ids = tip_ids_hidden_in_queue_from(principal).subquery()
    status_if_filtered = _filtered(
        select(Tip.status).where(Tip.id == hidden_ids.c.tip_id), principal, filters
    ).scalar_subquery()
    hidden = select(status_if_filtered.label("status"), literal(-1).label("tips"))
    every = union_all(*counted, hidden.select_from(hidden_ids)).subquery()
    per_status = (
        select(every.c.status, func.sum(every.c.tips))
        .where(every.c.status.is_not(None))
        .group_by(every.c.status)
    )
    for status, count in session.execute(per_status):
        counts[TipStatus(status).value] = int(count)
    return counts


QUEUE_ORDER = (Tip.urgent.desc(), Tip.received_on.asc(), Tip.id.asc())


def _page_ids(
    statement: Select[Tip], filters: QueueFilters
) -> Select[uuid.UUID] | CompoundSelect[*tuple[Any, ...]]:
    """The ids of the filtered queue's next page, plus one to tell whether more follow.

    Ids only: PostgreSQL reads them from the queue index alone (tag filters probe the tag
    index), so a filter matching one tip in a hundred reads a hundred index entries per row
    of the page, not a hundred table rows. After a cursor each urgency is one range of that
    index, ``(received_on, id)`` after the cursor's; an OR of the two would be read from the
    top of the index, a deep page costing the whole queue before it.
    """
    ids = statement.with_only_columns(Tip.id).order_by(*QUEUE_ORDER).limit(filters.limit + 1)
    if not filters.cursor:
        return ids
    urgent, received_on, tip_id = _decode_cursor(filters.cursor)
    same_urgency = ids.where(Tip.urgent.is_(urgent), tuple_(Tip.received_on, Tip.id) > (received_on, tip_id))
    if not urgent:
        return same_urgency
    # After an urgent tip: the urgent ones after it, then every tip that is not urgent.
    ranges = [page.subquery() for page in (same_urgency, ids.where(Tip.urgent.is_(False)))]
    return union_all(*(select(page.c.id) for page in ranges))


def list_queue(session: Session, principal: Principal, filters: QueueFilters | None = None) -> QueuePage:
    """Urgent first, then oldest first, one keyset page; metadata only, nothing is decrypted."""
    filters = filters or QueueFilters()
    statement = _filtered(tips_visible_to(principal), principal, filters)
    if filters.status is not None:
        statement = statement.where(Tip.status == filters.status)
    if session.get_bind().dialect.name == "postgresql":
        # A page is a short walk of the queue index. Under a selective filter the planner may
        # still split that walk among parallel workers, whose start-up costs more than the
        # walk (on two busy cores, 55 ms against 6 to 15: bench/triage_queue.py). Serial for
        # the rest of this transaction, which is the request's, never the connection's.
        session.execute(select(func.set_config("max_parallel_workers_per_gather", "0", True)))
    # The rows themselves under the visibility rule again, by id: the filters have chosen them.
    page = tips_visible_to(principal).where(Tip.id.in_(_page_ids(statement, filters)))
    rows = list(session.scalars(page.order_by(*QUEUE_ORDER).limit(filters.limit + 1)))
    tips, more = rows[: filters.limit], len(rows) > filters.limit
    tip_ids = [tip.id for tip in tips]
    counts = _status_counts(session, principal, filters)
    audit.record(session, principal.actor, "tips.list", details={"count": len(tips)})
    attachments = _count_by_tip(session, TipAttachment, tip_ids)
    messages = _count_by_tip(session, TipMessage, tip_ids)
    names = _usernames(session, {tip.assignee_id for tip in tips})
    return QueuePage(
        items=[_queue_item(tip, attachments.get(tip.id, 0), messages.get(tip.id, 0), names) for tip in tips],
        next_cursor=_encode_cursor(tips[-1]) if more else None,
        counts=counts,
    )


def open_tip(session: Session, principal: Principal, tip_id: uuid.UUID) -> tuple[Tip, bytes]:
    """A tip the caller may read, and its data key; NotFound for anything else."""
    tip = session.scalars(tip_readable_by(principal, tip_id)).first()
    intake_private = principal.intake_private_key(tip.intake_key_version) if tip else None
    if tip is None or intake_private is None:
        raise NotFound
    return tip, TIP_DATA_KEY.open(
        intake_private, tip.sealed_data_key, row_id=str(tip.id), key_version=tip.intake_key_version
    )


def read_tip(session: Session, principal: Principal, tip_id: uuid.UUID) -> TipDetail:
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
        key, key_version = attachment_key(principal, tip, data_key, attachment)
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
            )
        )
    messages = [_open_message(principal, message) for message in tip.messages]
    notes = list(
        session.scalars(
            select(TipNote).where(TipNote.tip_id == tip.id).order_by(TipNote.written_on, TipNote.id)
        )
    )
    history = list(
        session.scalars(select(TipEvent).where(TipEvent.tip_id == tip.id).order_by(TipEvent.position))
    )
    names = _usernames(
        session,
        {
            tip.assignee_id,
            tip.verification_proposed_by_id,
            *(note.author_id for note in notes),
            *(event.actor_id for event in history),
        },
    )
    return TipDetail(
        **_queue_item(tip, len(attachments), len(messages), names).model_dump(),
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
        duplicate_of=_visible_or_none(session, principal, tip.duplicate_of_id),
        verification_proposed_by=names.get(tip.verification_proposed_by_id)
        if tip.verification_proposed_by_id
        else None,
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
    within 90 days. Matched on blind-index tags, so only opened (indexed) tips take part.
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
            by_tag[tag_value] = f"{kind}: {value}"
    place_tags = [t for t, label in by_tag.items() if not label.startswith("tactic")]
    tactic_tags = [t for t, label in by_tag.items() if label.startswith("tactic")]
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


def attachment_key(
    principal: Principal, tip: Tip, tip_data_key: bytes, attachment: TipAttachment
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
