"""Deliveries, members' preferences, the organisation's channels and the reminders already sent.

Everything here is about staff, never about a report's content. Two values are still kept out
of a database copy (a backup, a replica) because they name staff, whom a state may also target:
a member's notice address and the organisation's webhook address are sealed under a key derived
from the server's integrity secret (app.notify.preferences), which lives beside the server, not
in the database. Whoever holds the running server reads them, as it must to send.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import EnvelopeColumn
from app.kit.db import Base

# Sealed under a key derived from the server's integrity secret (app.notify.preferences).
MEMBER_ADDRESS = EnvelopeColumn("notification_preferences", "address_encrypted")
WEBHOOK_URL = EnvelopeColumn("notification_settings", "webhook_url_encrypted")


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class DeliveryMode(StrEnum):
    IMMEDIATE = "immediate"  # batched for `notify_batch_seconds`, then sent
    DIGEST = "digest"  # collected for the organisation's digest period


class NotificationDelivery(Base):
    """One notice to send: to one member by mail, or to the organisation's webhook.

    Counts of each kind collect in one row per recipient, channel and batch (its idempotency
    key), so a burst is one notice. A sender takes a row by setting its lease in a single
    conditional UPDATE: two senders never hold the same row. A row is deleted once delivered.
    """

    __tablename__ = "notification_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    recipient_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE")
    )
    mode: Mapped[str] = mapped_column(String(16))
    # {"urgent_report": 2, ...}: kinds and counts, nothing else.
    counts: Mapped[str] = mapped_column(Text)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The last failure, as a short content-free phrase (app.notify.channels.DeliveryFailed).
    last_error: Mapped[str | None] = mapped_column(String(120))
    # Refused for good (an address the server does not know): kept, shown to the admin, not tried
    # again until the member changes their settings.
    parked: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index("ix_notification_deliveries_next_attempt_at", "next_attempt_at"),)


class NotificationPreference(Base):
    """A member's own choice: whether, where and how often."""

    __tablename__ = "notification_preferences"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    mode: Mapped[str] = mapped_column(String(16), default=DeliveryMode.IMMEDIATE.value)
    address_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # A public key (public by nature); notices to this member are then encrypted to it.
    openpgp_key: Mapped[str | None] = mapped_column(Text)
    openpgp_fingerprint: Mapped[str | None] = mapped_column(String(64))
    changed_on: Mapped[dt.date] = mapped_column(Date)


class NotificationSettings(Base):
    """The organisation's channels: one row (id 1), written by an admin."""

    __tablename__ = "notification_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    email_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    webhook_url_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Random; with the server secret it derives the webhook's signing key. A new salt is a new key.
    webhook_key_salt: Mapped[bytes | None] = mapped_column(LargeBinary)
    digest_hours: Mapped[int] = mapped_column(Integer, default=24)
    changed_on: Mapped[dt.date] = mapped_column(Date)


class ClockReminder(Base):
    """A reminder already queued: one per report, clock and start of the clock, never two.

    ``started_on`` is the day the clock started: the report's arrival (claim), the submitter's
    newest message (answer), its last activity (retention). A clock that starts again (the
    submitter wrote again, so the purge moves too) is a new row."""

    __tablename__ = "notification_reminders"

    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), primary_key=True)
    clock: Mapped[str] = mapped_column(String(16), primary_key=True)
    started_on: Mapped[dt.date] = mapped_column(Date, primary_key=True)
