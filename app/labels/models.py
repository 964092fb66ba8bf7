"""Labels and where they are attached.

A label's name is the organisation's own vocabulary ("Dublin station", "family in Xinjiang"):
content, so it is encrypted under the label's own data key, sealed to the intake key like a
tip's. What a database copy shows is which reports and cases share a label (random ids), never
its name. A retired label stays on what it was attached to but is offered no more.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Date, ForeignKey, Integer, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import EnvelopeColumn, SealedColumn, SealedRecord
from app.crypto.sealed_keys import SealedDataKeys
from app.kit.db import Base

LABEL_DATA_KEY = SealedColumn("labels", "sealed_data_key")
LABEL_NAME = EnvelopeColumn("labels", "name_encrypted")
LABEL_RECORD = SealedRecord(LABEL_DATA_KEY, LABEL_NAME)


class Label(Base):
    __tablename__ = "labels"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_on: Mapped[dt.date] = mapped_column(Date)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    retired_on: Mapped[dt.date | None] = mapped_column(Date)
    # As on tips: the version sealing the data key now, and the one bound into the name's AAD.
    intake_key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    content_key_version: Mapped[int] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    name_encrypted: Mapped[bytes] = mapped_column(LargeBinary)


# Re-sealed by `daylight keys rotate` after tips, messages, files and cases.
LABEL_SEALED_KEYS = SealedDataKeys(
    "labels", Label, LABEL_DATA_KEY, row_id=lambda label: str(label.id), lock_order=50
)


class TipLabel(Base):
    __tablename__ = "tip_labels"

    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), primary_key=True)
    label_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class CaseLabel(Base):
    __tablename__ = "case_labels"

    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    label_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True, index=True
    )
