"""Reading tips for staff: decryption happens here, for one tip at a time."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    distinct,
    false,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
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
    MessageAuthor,
    Tip,
    TipAttachment,
    TipMessage,
    TipStatus,
)
from app.kit.errors import InvalidInput
from app.labels.models import TipLabel
from app.labels.service import label_views
from app.triage import indexing, search, tags
from app.triage.labelling import tip_ids_with_label
from app.triage.models import (
    NO_ASSIGNEE,
    NO_TAG,
    TipQueueCount,
    TipQueueCountChange,
    TipSearchTerm,
    TipTag,
)
from app.triage.repository import fold_queue_count_changes
from app.triage.schemas import (
    QueueFilters,
    QueueItem,
    QueuePage,
    QueueSort,
    QueueSummary,
)

EXCERPT_CHARACTERS = 160


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


def _encode_cursor(tip: Tip, sort: QueueSort = QueueSort.URGENCY) -> str:
    """Where the next page starts: the last row's sort key and id. Its first part says the order
    (for urgency, the last row's urgency itself), so a cursor of one order is refused by another."""
    if sort is QueueSort.URGENCY:
        first, day = str(int(tip.urgent)), tip.received_on
    else:
        first, day = sort.value, getattr(tip, SORT_KEYS[sort][0].key)
    raw = f"{first}|{day.isoformat()}|{tip.id.hex}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: QueueSort = QueueSort.URGENCY) -> tuple[str, dt.date, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        first, day, tip_id = raw.split("|")
        if first not in (("0", "1") if sort is QueueSort.URGENCY else (sort.value,)):
            raise ValueError(first)
        return first, dt.date.fromisoformat(day), uuid.UUID(hex=tip_id)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise BadCursor(fields=[{"field": "cursor", "message": "not a cursor this service issued"}]) from None


def _filtered(statement: FilteredSelect, principal: Principal, filters: QueueFilters) -> FilteredSelect:
    """The queue's filters on any statement over Tip: language, tactic, country and station through
    blind-index tags, a label through the labels the caller can read. `_counter_conditions` and
    `_facets` say the same of the queue counters (which know tactic and country only, see
    `_counted_by_counters`): change them together."""
    if filters.assignee is not None:
        statement = statement.where(Tip.assignee_id == filters.assignee)
    if filters.mine:
        statement = statement.where(Tip.assignee_id == principal.account_id)
    if filters.unassigned:
        statement = statement.where(Tip.assignee_id.is_(None))
    if filters.urgent is not None:
        statement = statement.where(Tip.urgent.is_(filters.urgent))
    for kind, value in _tag_filters(filters):
        wanted = tags.tags_for(principal, kind, [value])
        statement = statement.where(Tip.id.in_(select(TipTag.tip_id).where(TipTag.tag.in_(wanted))))
    if filters.label is not None:
        # Only a label the caller can read filters: an id seen once (a link, a browser history)
        # must not keep telling a member without the key which reports carry it.
        statement = statement.where(Tip.id.in_(tip_ids_with_label(filters.label, principal)))
    return statement


def _tag_filters(filters: QueueFilters) -> list[tuple[str, str]]:
    chosen = (
        ("tactic", filters.tactic),
        ("country", filters.country),
        ("language", filters.language),
        ("station", filters.station),
    )
    return [(kind, str(value)) for kind, value in chosen if value is not None]


def _counted_by_counters(filters: QueueFilters) -> bool:
    """The trigger-kept counters know the workflow state and at most a tactic and a country;
    any other filter is counted over the filtered tips themselves."""
    return filters.language is None and filters.station is None and filters.label is None and not filters.q


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


def _status_counts(
    session: Session, principal: Principal, filters: QueueFilters, hits: Any = None
) -> dict[str, int]:
    """Tips per status among those the caller may see, with the page's filters but status.

    Not a count over `tips`, which grows with every submission: the counters the triggers
    keep for every tip (folded first, and the changes not folded yet added), minus the tips
    in restricted cases hidden from this caller, looked up one by one (they grow with the
    restricted cases, not with the queue). One statement, so all three are read from one
    snapshot.
    """
    counts = {status.value: 0 for status in TipStatus}
    if not _counted_by_counters(filters):
        return _direct_counts(session, principal, filters, counts, hits)
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


def _direct_counts(
    session: Session, principal: Principal, filters: QueueFilters, counts: dict[str, int], hits: Any
) -> dict[str, int]:
    """Per status, the tips the caller may see that match every filter but status: a count over
    the filtered tips (through the tag, label and search indexes), for filters the counters do
    not carry."""
    statement = _filtered(tips_visible_to(principal), principal, filters)
    if hits is not None:
        statement = statement.join(hits, hits.c.tip_id == Tip.id)
    per_status = statement.with_only_columns(Tip.status, func.count()).group_by(Tip.status)
    for status, count in session.execute(per_status):
        counts[TipStatus(status).value] = int(count)
    return counts


QUEUE_ORDER = (Tip.urgent.desc(), Tip.received_on.asc(), Tip.id.asc())
# The other orders a member may choose: each a single keyset, (date, id) in one direction.
SORT_KEYS = {
    QueueSort.OLDEST: (Tip.received_on, False),
    QueueSort.NEWEST: (Tip.received_on, True),
    QueueSort.ACTIVITY: (Tip.last_activity_on, True),
}


def _sorted_page_ids(statement: Select[Tip], filters: QueueFilters) -> Select[uuid.UUID]:
    column, descending = SORT_KEYS[filters.sort]
    ids = statement.with_only_columns(Tip.id).order_by(*_sort_order(filters)).limit(filters.limit + 1)
    if not filters.cursor:
        return ids
    _, day, tip_id = _decode_cursor(filters.cursor, filters.sort)
    after = tuple_(column, Tip.id) < (day, tip_id) if descending else tuple_(column, Tip.id) > (day, tip_id)
    return ids.where(after)


def _sort_order(filters: QueueFilters) -> tuple[ColumnElement[Any], ...]:
    if filters.sort is QueueSort.URGENCY:
        return QUEUE_ORDER
    column, descending = SORT_KEYS[filters.sort]
    return (column.desc(), Tip.id.desc()) if descending else (column.asc(), Tip.id.asc())


def _search_hits(session: Session, principal: Principal, query: str) -> Any:
    """Per tip, how many of the query's words it holds — in its text, or in the name of a label it
    carries, each word counted once — for tips holding at least `search.minimum_matches` of
    them: a subquery (tip_id, hits)."""
    words = search.query_words(query)
    per_word = search.query_terms(principal, words)
    # Label names are split into words as text is (accents, case, Chinese pairs), decrypted once.
    label_words = [(label.id, set(search.words_of(label.name))) for label in label_views(session, principal)]
    found: list[Select[uuid.UUID, int]] = []
    for number, terms in enumerate(per_word):
        found.append(
            select(TipSearchTerm.tip_id.label("tip_id"), literal(number).label("word")).where(
                TipSearchTerm.term.in_(terms)
            )
        )
        named = [label_id for label_id, names in label_words if words[number] in names]
        if named:
            found.append(
                select(TipLabel.tip_id.label("tip_id"), literal(number).label("word")).where(
                    TipLabel.label_id.in_(named)
                )
            )
    if not found:
        found.append(select(TipSearchTerm.tip_id.label("tip_id"), literal(0).label("word")).where(false()))
    rows = union_all(*found).subquery()
    # Without labels a tip has at most one row per word (its terms are all under one key version,
    # and (term, tip_id) is the key): count(*) then counts words, at a third of the cost.
    matched = func.count(distinct(rows.c.word)) if len(found) > len(per_word) else func.count()
    return (
        select(rows.c.tip_id, matched.label("hits"))
        .group_by(rows.c.tip_id)
        .having(matched >= search.minimum_matches(max(len(words), 1)))
        .subquery()
    )


def _summaries(session: Session, principal: Principal, tips: list[Tip]) -> dict[uuid.UUID, QueueSummary]:
    """Language, tactics, place and an excerpt of each readable tip on the page, decrypted for
    this response only. Not a read of the report (its history, messages and notes stay closed):
    recorded with the queue view, as the number of summaries shown."""
    if not principal.can(Permission.READ_TIP_CONTENT):
        return {}
    summaries: dict[uuid.UUID, QueueSummary] = {}
    for tip in tips:
        try:
            report = indexing.open_report(principal, tip)
        except indexing.UNREADABLE:
            continue  # shown without a summary; the backfill recorded the alert, opening it fails
        if report is None:
            continue
        answers = report.answers
        excerpt = " ".join(report.narrative.split())
        if len(excerpt) > EXCERPT_CHARACTERS:
            excerpt = excerpt[: EXCERPT_CHARACTERS - 1].rstrip() + "…"
        station = answers.get("station_id")
        summaries[tip.id] = QueueSummary(
            language=str(answers.get("language") or ""),
            tactics=[str(tactic) for tactic in answers.get("tactics") or []],
            host_country=answers.get("host_country"),
            host_city=answers.get("host_city"),
            station_id=uuid.UUID(str(station)) if station else None,
            excerpt=excerpt,
        )
    return summaries


def _submitter_wrote_on(session: Session, tip_ids: list[uuid.UUID]) -> dict[uuid.UUID, dt.date]:
    if not tip_ids:
        return {}
    rows = session.execute(
        select(TipMessage.tip_id, func.max(TipMessage.sent_on))
        .where(TipMessage.tip_id.in_(tip_ids), TipMessage.author == MessageAuthor.SUBMITTER)
        .group_by(TipMessage.tip_id)
    )
    return {tip_id: day for tip_id, day in rows}  # noqa: C416 - rows, not pairs, to the type checker


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
    first, received_on, tip_id = _decode_cursor(filters.cursor)
    urgent = first == "1"
    same_urgency = ids.where(Tip.urgent.is_(urgent), tuple_(Tip.received_on, Tip.id) > (received_on, tip_id))
    if not urgent:
        return same_urgency
    # After an urgent tip: the urgent ones after it, then every tip that is not urgent.
    ranges = [page.subquery() for page in (same_urgency, ids.where(Tip.urgent.is_(False)))]
    return union_all(*(select(page.c.id) for page in ranges))


def list_queue(
    session: Session,
    principal: Principal,
    filters: QueueFilters | None = None,
    *,
    integrity_key: bytes | None = None,
) -> QueuePage:
    """One page of the queue in the chosen order (urgent first, then oldest, by default), or
    with a search the best-ranked matches. Given the key-integrity key, first brings the keyed
    indexes up to date for the caller (app.triage.indexing), so filters and search cover every
    report they can read; a key holder's page carries each report's summary."""
    filters = filters or QueueFilters()
    if integrity_key is not None:
        indexing.backfill(session, principal, integrity_key=integrity_key)
    statement = _filtered(tips_visible_to(principal), principal, filters)
    if filters.status is not None:
        statement = statement.where(Tip.status == filters.status)
    if session.get_bind().dialect.name == "postgresql":
        # A page is a short walk of the queue index. Under a selective filter the planner may
        # still split that walk among parallel workers, whose start-up costs more than the
        # walk (on two busy cores, 55 ms against 6 to 15: bench/triage_queue.py). Serial for
        # the rest of this transaction, which is the request's, never the connection's.
        session.execute(select(func.set_config("max_parallel_workers_per_gather", "0", True)))
    hits = _search_hits(session, principal, filters.q) if filters.q else None
    if hits is not None:
        tips, more = _searched(session, principal, statement, filters, hits), False
    else:
        if filters.sort is QueueSort.URGENCY:
            page_ids: Any = _page_ids(statement, filters)
        else:
            page_ids = _sorted_page_ids(statement, filters)
        # The rows themselves under the visibility rule again, by id: the filters have chosen them.
        page = tips_visible_to(principal).where(Tip.id.in_(page_ids))
        rows = list(session.scalars(page.order_by(*_sort_order(filters)).limit(filters.limit + 1)))
        tips, more = rows[: filters.limit], len(rows) > filters.limit
    tip_ids = [tip.id for tip in tips]
    counts = _status_counts(session, principal, filters, hits)
    matches = None
    if hits is not None:
        # The counts are of the same matches, every status: the search's own total without a
        # third pass over its hits.
        matches = counts[filters.status.value] if filters.status is not None else sum(counts.values())
    summaries = _summaries(session, principal, tips) if filters.summaries else {}
    audit.record(
        session,
        principal.actor,
        "tips.search" if filters.q else "tips.list",
        details={"count": len(tips), "summaries": len(summaries)},
    )
    attachments = _count_by_tip(session, TipAttachment, tip_ids)
    messages = _count_by_tip(session, TipMessage, tip_ids)
    wrote_on = _submitter_wrote_on(session, tip_ids)
    names = usernames(session, {tip.assignee_id for tip in tips})
    items = []
    for tip in tips:
        item = queue_item(tip, attachments.get(tip.id, 0), messages.get(tip.id, 0), names)
        item.submitter_wrote_on = wrote_on.get(tip.id)
        item.summary = summaries.get(tip.id)
        items.append(item)
    next_cursor = None
    if more and not filters.q:
        next_cursor = _encode_cursor(tips[-1], filters.sort)
    return QueuePage(
        items=items,
        next_cursor=next_cursor,
        counts=counts,
        unindexed=indexing.still_pending(session, principal) if integrity_key is not None else 0,
        matches=matches,
    )


def _searched(
    session: Session, principal: Principal, statement: Select[Tip], filters: QueueFilters, hits: Any
) -> list[Tip]:
    """The best-ranked matches of a search among the filtered tips the caller can read: most
    query words first, then urgent, then newest. One page (the limit), no cursor."""
    if not principal.can(Permission.READ_TIP_CONTENT) or not principal.keys.intake:
        return []
    # `tips_readable_by`'s rule as conditions on the filtered rows themselves (not a join of
    # `tips` with itself, which read the whole table at 100,000 tips: bench/desk_search.py).
    readable = statement.where(Tip.intake_key_version.in_(sorted(principal.keys.intake)))
    ranked = list(
        session.execute(
            readable.join(hits, hits.c.tip_id == Tip.id)
            .with_only_columns(Tip.id)
            .order_by(hits.c.hits.desc(), Tip.urgent.desc(), Tip.received_on.desc(), Tip.id)
            .limit(min(filters.limit, search.MAX_RESULTS))
        ).scalars()
    )
    order = {tip_id: position for position, tip_id in enumerate(ranked)}
    return sorted(session.scalars(select(Tip).where(Tip.id.in_(ranked))), key=lambda tip: order[tip.id])
