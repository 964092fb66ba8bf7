"""Cases: verified tips grouped for investigation, with members, notes and a timeline.

Title, summary, notes and the resolution note are content, encrypted under the
case's own data key (sealed to the intake key like a tip's). Tactics, host
country and status are plaintext by design (DESIGN 6): statistics count them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Boolean, Date, ForeignKey, Integer, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import EnvelopeColumn, SealedColumn
from app.crypto.sealed_keys import SealedDataKeys
from app.kit.db import Base, enum_column_type

CASE_DATA_KEY = SealedColumn("cases", "sealed_data_key")
CASE_TITLE = EnvelopeColumn("cases", "title_encrypted")
CASE_SUMMARY = EnvelopeColumn("cases", "summary_encrypted")
CASE_RESOLUTION = EnvelopeColumn("cases", "resolution_encrypted")
CASE_NOTE_BODY = EnvelopeColumn("case_notes", "body_encrypted")


def case_note_row_id(case_id: uuid.UUID, note_id: uuid.UUID) -> str:
    return f"{case_id}/{note_id}"


class CaseStatus(StrEnum):
    OPEN = "open"
    INVESTIGATING = "investigating"
    REFERRED = "referred"
    CLOSED = "closed"


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ref: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[CaseStatus] = mapped_column(enum_column_type(CaseStatus, "case_status"), index=True)
    # Only members see a restricted case and its tips (enforced in every query: app.cases.repository).
    restricted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    host_country: Mapped[str | None] = mapped_column(String(2))
    created_on: Mapped[dt.date] = mapped_column(Date)
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    # As on tips (app.intake.models): the version sealing the data key now, and the one
    # bound into the content's AAD since the case was created.
    intake_key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    content_key_version: Mapped[int] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    title_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    summary_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    resolution_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)


# Re-sealed by `daylight keys rotate` after the tips and their messages and files (app.intake.models).
CASE_SEALED_KEYS = SealedDataKeys(
    "cases", Case, CASE_DATA_KEY, row_id=lambda case: str(case.id), lock_order=40
)


class CaseTactic(Base):
    __tablename__ = "case_tactics"

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    tactic: Mapped[str] = mapped_column(String(32), primary_key=True)


class CaseTip(Base):
    """A verified tip in a case; a tip may belong to several cases."""

    __tablename__ = "case_tips"

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    tip_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tips.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class CaseMember(Base):
    __tablename__ = "case_members"

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class CaseNote(Base):
    __tablename__ = "case_notes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    written_on: Mapped[dt.date] = mapped_column(Date)
    body_encrypted: Mapped[bytes] = mapped_column(LargeBinary)


class CaseEvent(Base):
    """The case's timeline: who did what, on which day."""

    __tablename__ = "case_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_accounts.id", ondelete="SET NULL"))
    detail: Mapped[str | None] = mapped_column(String(64))
    happened_on: Mapped[dt.date] = mapped_column(Date)
