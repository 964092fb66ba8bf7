"""The outbox of content-free notifications.

A row says only which kind of event happened and who should hear of it (a role, a member, the
members of a case): notices carry no content, and the outbox is read by a sender that needs
none. One row names a report: a submitter's answer to a report nobody holds, so that the sender
can keep a restricted case's report to the case's members. No row has a time column: a
second-precise time beside a report's arrival is what the tips table avoids keeping
(app.kit.clock). `daylight notify` turns the rows into deliveries (app.notify) and deletes them
in the same transaction, within seconds when `daylight serve` sends.

Writers append in their own transaction (app.outbox.events.notify): a rolled-back step leaves no
notice, and a committed one cannot lose its notice, whatever happens to the sender.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base


class NoticeKind(StrEnum):
    URGENT_REPORT = "urgent_report"
    NEW_REPORT = "new_report"
    SUBMITTER_ANSWERED = "submitter_answered"
    ASSIGNED = "assigned"
    VERIFICATION_WAITING = "verification_waiting"
    CASE_CHANGED = "case_changed"
    OVERDUE = "overdue"
    RETENTION = "retention"


class Audience(StrEnum):
    """Who hears of an event; resolved when the sender runs, against the accounts of that moment."""

    # Active caseworkers and leads holding the current intake key; audience_id, when set, is a
    # report: if it is in a restricted case, only those of them who are the case's members.
    KEY_HOLDERS = "key_holders"
    LEADS = "leads"  # active leads
    MEMBER = "member"  # one account: audience_id
    CASE_MEMBERS = "case_members"  # the members of the case audience_id
    CONFIRMERS = "confirmers"  # whoever the review policy lets confirm a proposal


class NotificationEvent(Base):
    __tablename__ = "notification_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    audience: Mapped[str] = mapped_column(String(16))
    # A member, a case or a report; no foreign key: one deleted meanwhile has nobody to tell.
    audience_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The member who caused it (the proposer, the one who changed the case) is not told.
    excluded_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    count: Mapped[int] = mapped_column(Integer, default=1)
