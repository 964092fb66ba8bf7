"""Bringing the keyed indexes up to date while a key holder is at work.

Filters and search run on keyed indexes (app.triage.tags, app.triage.search) whose keys derive
from the intake private key. The intake server never holds that key, so it cannot index a report
when it arrives; instead the first queue or search of a key holder indexes every report not yet
indexed (new ones, and those with a message or note added since), before it filters. Filters and
search therefore cover every report the member can read, opened or not.

This is not a read of each report by the member: nothing decrypted here is shown or kept beyond
the request, and it is recorded as one `tips.index` event with a count, not as `tip.read` events.
Only a tip's own texts are indexed, and a message whose row MAC fails (written by someone with
database access, not by the server) is left out of the index: a planted message must not make a
report findable by words its submitter never wrote.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, false, func, insert, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.principal import Principal
from app.cases.repository import tips_readable_by
from app.crypto.errors import DecryptionError
from app.intake.integrity import message_is_authentic
from app.intake.models import (
    MESSAGE_BODY,
    MESSAGE_DATA_KEY,
    TIP_ANSWERS,
    TIP_DATA_KEY,
    TIP_NARRATIVE,
    Tip,
    TipMessage,
    message_row_id,
)
from app.triage import search, tags
from app.triage.models import NOTE_BODY, TipNote, TipSearchTerm, TipTag, note_row_id

logger = logging.getLogger("daylight.triage")

# Per request: a queue after a flood of submissions indexes in steps instead of one long
# request; the page says how many are still waiting.
BACKFILL_BATCH = 500


def _message_texts(
    session: Session, principal: Principal, tip_ids: list[uuid.UUID], integrity_key: bytes
) -> dict[uuid.UUID, list[str]]:
    texts: dict[uuid.UUID, list[str]] = defaultdict(list)
    for message in session.scalars(select(TipMessage).where(TipMessage.tip_id.in_(tip_ids))):
        private = principal.intake_private_key(message.intake_key_version)
        if private is None or not message_is_authentic(integrity_key, message):
            continue
        row_id = message_row_id(message.tip_id, message.id)
        try:
            data_key = MESSAGE_DATA_KEY.open(
                private, message.sealed_data_key, row_id=row_id, key_version=message.intake_key_version
            )
            body = MESSAGE_BODY.open(
                data_key, message.body_encrypted, row_id=row_id, key_version=message.content_key_version
            ).decode()
        except UNREADABLE:
            continue  # stays out of the index; the tip's page shows the failure
        texts[message.tip_id].append(body)
    return texts


def _note_texts(session: Session, tips: dict[uuid.UUID, tuple[Tip, bytes]]) -> dict[uuid.UUID, list[str]]:
    texts: dict[uuid.UUID, list[str]] = defaultdict(list)
    for note in session.scalars(select(TipNote).where(TipNote.tip_id.in_(list(tips)))):
        tip, data_key = tips[note.tip_id]
        try:
            body = NOTE_BODY.open(
                data_key,
                note.body_encrypted,
                row_id=note_row_id(tip.id, note.id),
                key_version=tip.content_key_version,
            ).decode()
        except UNREADABLE:
            continue  # a note that does not open stays out of the index; its tip's page says so
        texts[note.tip_id].append(body)
    return texts


@dataclass(frozen=True, slots=True)
class OpenedReport:
    """A tip's data key, answers and narrative, decrypted for one request."""

    data_key: bytes
    answers: dict[str, Any]
    narrative: str


def open_report(principal: Principal, tip: Tip) -> OpenedReport | None:
    """None when the caller holds no key of the tip's version."""
    private = principal.intake_private_key(tip.intake_key_version)
    if private is None:
        return None
    row_id, version = str(tip.id), tip.content_key_version
    data_key = TIP_DATA_KEY.open(
        private, tip.sealed_data_key, row_id=row_id, key_version=tip.intake_key_version
    )
    opened = TIP_ANSWERS.open(data_key, tip.answers_encrypted, row_id=row_id, key_version=version)
    answers = json.loads(opened)
    narrative = TIP_NARRATIVE.open(data_key, tip.narrative_encrypted, row_id=row_id, key_version=version)
    if not isinstance(answers, dict):
        raise ValueError("a tip's answers are a JSON object")
    return OpenedReport(data_key, answers, narrative.decode())


# What one row that does not open or parse raises. A page that decrypts many rows skips such a
# row instead of failing whole: one planted or damaged row (a database writer, SECURITY.md 2a2)
# must not take the queue down for every key holder.
UNREADABLE = (DecryptionError, ValueError, TypeError, KeyError, AttributeError)


def _unreadable(session: Session, principal: Principal, tip: Tip) -> None:
    """A tip that does not open: recorded once (it is then marked indexed, with no tags or terms,
    so the next batch moves on); opening it shows the integrity failure."""
    logger.error("integrity alert: a tip's sealed content did not open while indexing")
    audit.record(
        session,
        principal.actor,
        "integrity.alert",
        object_type="tip",
        object_id=tip.id,
        outcome=audit.Outcome.FAILURE,
        details={"while": "indexing"},
    )
    tip.indexed = tip.search_indexed = True


def index_tips(session: Session, principal: Principal, tips: list[Tip], integrity_key: bytes) -> None:
    """Write these tips' filter tags (where missing) and search terms (again), each under its
    key version's keys: a few statements for the whole batch, not a few per tip."""
    opened: dict[uuid.UUID, tuple[Tip, OpenedReport, list[tuple[str, str]]]] = {}
    for tip in tips:
        try:
            report = open_report(principal, tip)
            # The answers' shape is checked here, before anything of the batch is written.
            labels = tags.labels_of(report.answers) if report is not None else []
        except UNREADABLE:
            _unreadable(session, principal, tip)
            continue
        if report is not None:
            opened[tip.id] = (tip, report, labels)
    if not opened:
        return
    tip_ids = list(opened)
    messages = _message_texts(session, principal, tip_ids, integrity_key)
    notes = _note_texts(
        session, {tip_id: (tip, report.data_key) for tip_id, (tip, report, _) in opened.items()}
    )
    untagged = [tip_id for tip_id, (tip, _, _) in opened.items() if not tip.indexed]
    if untagged:
        # Tags from an older indexing (before a kind of tag existed) are replaced.
        session.execute(delete(TipTag).where(TipTag.tip_id.in_(untagged)))
    session.execute(delete(TipSearchTerm).where(TipSearchTerm.tip_id.in_(tip_ids)))
    # The keys of each version once per batch; never cached beyond the request, which is as long
    # as the member's keys should be in this process's memory.
    filter_keys = {
        version: tags.filter_key(private, version) for version, private in principal.keys.intake.items()
    }
    search_keys = {
        version: search.search_key(private, version) for version, private in principal.keys.intake.items()
    }
    tag_rows: list[dict[str, object]] = []
    term_rows: list[dict[str, object]] = []
    for tip_id, (tip, report, labels) in opened.items():
        if not tip.indexed:
            filter_key = filter_keys[tip.intake_key_version]
            tag_rows += [
                {"tip_id": tip_id, "tag": value}
                for value in {tags.tag(filter_key, *label) for label in labels}
            ]
            tip.indexed = True
        city = str(report.answers.get("host_city") or "")
        texts = [report.narrative, city, *messages[tip_id], *notes[tip_id]]
        terms = search.terms_of(search_keys[tip.intake_key_version], texts)
        term_rows += [{"term": value, "tip_id": tip_id} for value in terms]
        tip.search_indexed = True
    if tag_rows:
        session.execute(insert(TipTag), tag_rows)
    if term_rows:
        session.execute(insert(TipSearchTerm), term_rows)


def _pending(principal: Principal) -> Select[Tip]:
    # `= false`, the partial index's own predicate (ix_tips_awaiting_index): `IS false` would not
    # let PostgreSQL use it, and every page would read every tip.
    return tips_readable_by(principal).where(Tip.search_indexed == false())


def backfill(
    session: Session, principal: Principal, *, integrity_key: bytes, limit: int = BACKFILL_BATCH
) -> int:
    """Index up to ``limit`` of the tips the caller can read whose index is not current.

    Rows are locked first (on PostgreSQL skipping those another member's request is indexing
    now: it will have them indexed by its commit), and before any audit append, as every writer
    of a tip does. Returns how many were indexed.
    """
    if not principal.keys.intake:
        return 0
    locked = _pending(principal).with_only_columns(Tip.id).order_by(Tip.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # FOR NO KEY UPDATE: a follow-up message inserted meanwhile (its foreign key takes KEY
        # SHARE) does not wait on the member's request; its UPDATE of the flag does, and lands after.
        locked = locked.with_for_update(skip_locked=True, key_share=True)
    tip_ids: list[uuid.UUID] = list(session.scalars(locked))
    if not tip_ids:
        return 0
    tips = session.scalars(select(Tip).where(Tip.id.in_(tip_ids)).execution_options(populate_existing=True))
    index_tips(session, principal, [tip for tip in tips if not tip.search_indexed], integrity_key)
    session.flush()
    audit.record(session, principal.actor, "tips.index", details={"count": len(tip_ids)})
    return len(tip_ids)


# Past this many, the page says "more than": counting a flood exactly would read all of it.
PENDING_COUNTED_UP_TO = 10_000


def still_pending(session: Session, principal: Principal) -> int:
    """How many readable tips wait for the index (after this request's batch), counted up to
    one more than PENDING_COUNTED_UP_TO."""
    if not principal.keys.intake:
        return 0
    waiting = _pending(principal).with_only_columns(Tip.id).limit(PENDING_COUNTED_UP_TO + 1).subquery()
    return int(session.scalar(select(func.count()).select_from(waiting)) or 0)
