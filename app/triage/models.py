"""The triage workflow's own rows: a tip's history, staff notes, filter tags and queue counts."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, Date, ForeignKey, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import EnvelopeColumn, SealedColumn, SealedRecord
from app.crypto.sealed_keys import SealedDataKeys
from app.kit.db import Base

# Notes are content: encrypted under the tip's data key, bound to the tip and the note.
NOTE_BODY = EnvelopeColumn("tip_notes", "body_encrypted")


def note_row_id(tip_id: uuid.UUID, note_id: uuid.UUID) -> str:
    return f"{tip_id}/{note_id}"


class TipEvent(Base):
    """One step of a tip's workflow: who did what, on which day (never finer)."""

    __tablename__ = "tip_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    # A non-sensitive word or two: a rejection reason, the assignee's username.
    detail: Mapped[str | None] = mapped_column(String(64))
    happened_on: Mapped[dt.date] = mapped_column(Date)


class TipNote(Base):
    """A staff note on a tip: never shown to the submitter."""

    __tablename__ = "tip_notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    written_on: Mapped[dt.date] = mapped_column(Date)
    body_encrypted: Mapped[bytes] = mapped_column(LargeBinary)


class TipTag(Base):
    """A keyed blind index entry: HMAC(filter key, "tactic:surveillance") for a tip.

    The filter key is derived from the intake private key (app.triage.tags), so
    only a key holder can compute or test a tag: a seized server without a logged-in
    key holder cannot learn which tip names which tactic or country.
    """

    __tablename__ = "tip_tags"

    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True, index=True)


# The queue counts' key for "no assignee": a primary key column cannot hold NULL, and no
# account has this id (account ids are random UUID4s, never all zeros).
NO_ASSIGNEE = uuid.UUID(int=0)
# The key for "no tag" in a facet: all tips (both tags empty), or tips with one tag.
NO_TAG = b""


class TipQueueCount(Base):
    """How many tips share a status, urgency and assignee, per facet: all tips, tips with a tag,
    or tips with both tags of a pair (``first_tag < second_tag``).

    The queue's per-status counts are read from here instead of counting a million tips. Rows
    are written only by ``fold_queue_count_changes``, from the changes that database triggers
    on ``tips`` and ``tip_tags`` append (migration 3f1c9a7e5b20): whatever code writes a tip,
    in the same transaction. A key whose count falls to zero is deleted, so a purged tip's
    tags and workflow state leave no row behind. Tags are the blind-index values of
    ``tip_tags``: a count per tag says no more than ``tip_tags`` does already.
    """

    __tablename__ = "tip_queue_counts"

    first_tag: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    second_tag: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(32), primary_key=True)
    urgent: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    assignee_key: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tip_count: Mapped[int] = mapped_column(Integer)


class TipQueueCountChange(Base):
    """A change to a ``TipQueueCount`` not folded in yet, appended by a trigger.

    Appending instead of updating the count in place is what keeps concurrent writers apart:
    two submissions (or a purge and a claim) never wait on one counter row, so they can
    neither queue behind each other nor deadlock. The queue folds these rows into the counts
    as it reads them. The id is random: a sequence would record in which order submissions
    and staff actions happened, a finer time than DESIGN 5 allows about a submitter.
    """

    __tablename__ = "tip_queue_count_changes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    first_tag: Mapped[bytes] = mapped_column(LargeBinary(32))
    second_tag: Mapped[bytes] = mapped_column(LargeBinary(32))
    status: Mapped[str] = mapped_column(String(32))
    urgent: Mapped[bool] = mapped_column(Boolean)
    assignee_key: Mapped[uuid.UUID] = mapped_column(Uuid)
    change: Mapped[int] = mapped_column(Integer)


class TipSearchTerm(Base):
    """One word of a tip's text in the keyed search index: HMAC(search key, word), truncated.

    The search key is derived from the intake private key (app.triage.search), so, like the
    filter tags, only a key holder can compute the term of a word to look for it. A database
    copy shows which tips share a word and how many distinct words each has (SECURITY.md), not
    which words. Presence only: no position and no count, so a copy shows no word order either.
    """

    __tablename__ = "tip_search_terms"

    term: Mapped[bytes] = mapped_column(LargeBinary(16), primary_key=True)
    tip_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tips.id", ondelete="CASCADE"), primary_key=True, index=True
    )


SAVED_VIEW_DATA_KEY = SealedColumn("saved_views", "sealed_data_key")
SAVED_VIEW_FILTERS = EnvelopeColumn("saved_views", "filters_encrypted")
SAVED_VIEW_RECORD = SealedRecord(SAVED_VIEW_DATA_KEY, SAVED_VIEW_FILTERS)


class SavedView(Base):
    """A member's named queue filter ("urgent, unassigned, Uyghur").

    Name and filters are sealed to the intake key like content: a filter on a language or a
    tactic says what the organisation is looking for, which a database copy should not show.
    """

    __tablename__ = "saved_views"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True
    )
    created_on: Mapped[dt.date] = mapped_column(Date)
    intake_key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    content_key_version: Mapped[int] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    filters_encrypted: Mapped[bytes] = mapped_column(LargeBinary)


SAVED_VIEW_SEALED_KEYS = SealedDataKeys(
    "saved views", SavedView, SAVED_VIEW_DATA_KEY, row_id=lambda view: str(view.id), lock_order=60
)
