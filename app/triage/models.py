"""The triage workflow's own rows: a tip's history, staff notes and filter tags."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Date, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import EnvelopeColumn
from app.db import Base

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
