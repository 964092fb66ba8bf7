"""The response clocks' reminders: overdue reports and reports nearing their purge, told to leads.

Each report is counted once per clock and start of the clock (`notification_reminders`), so a
report left overdue for a month is one reminder, not thirty; a clock that starts again (the
submitter wrote again, which also restarts the retention clock) can be reminded of again. The
rules themselves are the queue's (app.triage.clocks): what the reminder counts, the queue marks.

Reports already reminded are left out in SQL (NOT EXISTS on the reminders' primary key), so a
backlog larger than one sweep's limit is worked through over the following runs instead of the
same oldest reports coming back each time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, SQLColumnExpression, exists, func, insert, select
from sqlalchemy.orm import Session

from app.intake.models import MessageAuthor, Tip, TipMessage, TipStatus
from app.kit.config import Settings
from app.notify.models import ClockReminder
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from app.triage import clocks

# Reports taken per clock per sweep; the rest at the next run.
SWEEP_LIMIT = 2000
OPEN_STATUSES = (TipStatus.NEW, TipStatus.IN_REVIEW, TipStatus.NEEDS_INFO)


class Clock:
    CLAIM = "claim"
    ANSWER = "answer"
    RETENTION = "retention"


@dataclass(frozen=True)
class Sweep:
    reminded: int
    more: bool  # a clock hit SWEEP_LIMIT: more reports wait for the next run


def _not_reminded(
    clock: str, tip_id: SQLColumnExpression[uuid.UUID], started_on: SQLColumnExpression[dt.date]
) -> ColumnElement[bool]:
    return ~exists().where(
        ClockReminder.tip_id == tip_id,
        ClockReminder.clock == clock,
        ClockReminder.started_on == started_on,
    )


def _remember(session: Session, clock: str, rows: list[tuple[uuid.UUID, dt.date]]) -> int:
    if rows:
        session.execute(
            insert(ClockReminder),
            [{"tip_id": tip_id, "clock": clock, "started_on": day} for tip_id, day in rows],
        )
    return len(rows)


def _claims(session: Session, settings: Settings, today: dt.date) -> list[tuple[uuid.UUID, dt.date]]:
    rows = session.execute(
        select(Tip.id, Tip.received_on)
        .where(
            clocks.claim_overdue_condition(settings, today),
            _not_reminded(Clock.CLAIM, Tip.id, Tip.received_on),
        )
        .order_by(Tip.received_on, Tip.id)
        .limit(SWEEP_LIMIT)
    )
    return [(tip_id, day) for tip_id, day in rows]


def _answers(session: Session, settings: Settings, today: dt.date) -> list[tuple[uuid.UUID, dt.date]]:
    newest = (
        select(TipMessage.tip_id, func.max(TipMessage.sent_on).label("wrote_on"))
        .where(TipMessage.author == MessageAuthor.SUBMITTER)
        .group_by(TipMessage.tip_id)
        .subquery()
    )
    wrote_before = today - dt.timedelta(days=settings.submitter_message_overdue_days)
    rows = session.execute(
        select(Tip.id, newest.c.wrote_on)
        .join(newest, newest.c.tip_id == Tip.id)
        .where(
            Tip.submitter_activity.is_(True),
            Tip.status.in_(OPEN_STATUSES),
            newest.c.wrote_on < wrote_before,
            _not_reminded(Clock.ANSWER, Tip.id, newest.c.wrote_on),
        )
        .order_by(newest.c.wrote_on, Tip.id)
        .limit(SWEEP_LIMIT)
    )
    return [(tip_id, day) for tip_id, day in rows]


def _purges(session: Session, settings: Settings, today: dt.date) -> list[tuple[uuid.UUID, dt.date]]:
    rows = session.execute(
        select(Tip.id, Tip.last_activity_on)
        .where(
            clocks.purge_warning_condition(settings, today),
            _not_reminded(Clock.RETENTION, Tip.id, Tip.last_activity_on),
        )
        .order_by(Tip.last_activity_on, Tip.id)
        .limit(SWEEP_LIMIT)
    )
    return [(tip_id, day) for tip_id, day in rows]


def queue_reminders(session: Session, settings: Settings, today: dt.date) -> Sweep:
    """Queue one lead reminder for the reports that became overdue or came near their purge
    since the last sweep, in the caller's transaction."""
    claims, answers, purges = (
        _claims(session, settings, today),
        _answers(session, settings, today),
        _purges(session, settings, today),
    )
    overdue = _remember(session, Clock.CLAIM, claims) + _remember(session, Clock.ANSWER, answers)
    nearing_purge = _remember(session, Clock.RETENTION, purges)
    outbox.notify(session, NoticeKind.OVERDUE, Audience.LEADS, count=overdue)
    outbox.notify(session, NoticeKind.RETENTION, Audience.LEADS, count=nearing_purge)
    more = any(len(rows) == SWEEP_LIMIT for rows in (claims, answers, purges))
    return Sweep(reminded=overdue + nearing_purge, more=more)
