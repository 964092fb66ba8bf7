"""Reading tips for staff: decryption happens here, for one tip at a time."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, CompoundSelect, Select, func, literal, select, tuple_, union_all
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.accounts import usernames
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.cases.repository import (
    tip_ids_hidden_in_queue_from,
    tips_visible_to,
)
from app.intake.models import (
    Tip,
    TipAttachment,
    TipMessage,
    TipStatus,
)
from app.kit.errors import InvalidInput
from app.triage import tags
from app.triage.models import (
    NO_ASSIGNEE,
    NO_TAG,
    TipQueueCount,
    TipQueueCountChange,
    TipTag,
)
from app.triage.repository import fold_queue_count_changes
from app.triage.schemas import (
    QueueFilters,
    QueueItem,
    QueuePage,
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


def queue_item(tip: Tip, attachments: int, messages: int, names: dict[uuid.UUID, str]) -> QueueItem:
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
    return queue_item(tip, attachments, messages, usernames(session, {tip.assignee_id}))


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
    names = usernames(session, {tip.assignee_id for tip in tips})
    return QueuePage(
        items=[queue_item(tip, attachments.get(tip.id, 0), messages.get(tip.id, 0), names) for tip in tips],
        next_cursor=_encode_cursor(tips[-1]) if more else None,
        counts=counts,
    )
