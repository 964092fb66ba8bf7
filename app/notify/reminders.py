"""The response clocks' reminders: overdue reports and reports nearing their purge, told to leads.

Each report is counted once per clock and deadline (`notification_reminders`), so a report left
overdue for a month is one reminder, not thirty; a deadline that moves (the submitter wrote
again, which also restarts the retention clock) can be reminded of again. The rules themselves
are the queue's (app.triage.clocks): what the reminder counts, the queue marks.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import func, insert, select, tuple_
from sqlalchemy.orm import Session

from app.intake.models import MessageAuthor, Tip, TipMessage, TipStatus
from app.kit.config import Settings
from app.notify.models import ClockReminder
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from app.triage import clocks

# Reports examined per clock per run; the rest wait for the next run (every half minute).
SWEEP_LIMIT = 2000


class Clock:
    CLAIM = "claim"
    ANSWER = "answer"
    RETENTION = "retention"


def _unreminded(
    session: Session, clock: str, due: Iterable[tuple[uuid.UUID, dt.date]]
) -> list[tuple[uuid.UUID, dt.date]]:
    due = list(due)
    if not due:
        return []
    known = set(
        session.execute(
            select(ClockReminder.tip_id, ClockReminder.due_on).where(
                ClockReminder.clock == clock,
                tuple_(ClockReminder.tip_id, ClockReminder.due_on).in_(due),
            )
        )
    )
    fresh = [pair for pair in due if pair not in known]
    if fresh:
        session.execute(
            insert(ClockReminder),
            [{"tip_id": tip_id, "clock": clock, "due_on": day} for tip_id, day in fresh],
        )
    return fresh


def _claims_due(session: Session, settings: Settings, today: dt.date) -> list[tuple[uuid.UUID, dt.date]]:
    rows = session.execute(
        select(Tip.id, Tip.received_on, Tip.urgent)
        .where(clocks.claim_overdue_condition(settings, today))
        .order_by(Tip.received_on, Tip.id)
        .limit(SWEEP_LIMIT)
    )
    return [
        (tip_id, received_on + dt.timedelta(days=clocks.claim_days(settings, urgent=urgent)))
        for tip_id, received_on, urgent in rows
    ]


def _answers_due(session: Session, settings: Settings, today: dt.date) -> list[tuple[uuid.UUID, dt.date]]:
    wrote_before = today - dt.timedelta(days=settings.submitter_message_overdue_days)
    newest = func.max(TipMessage.sent_on)
    rows = session.execute(
        select(Tip.id, newest)
        .join(TipMessage, TipMessage.tip_id == Tip.id)
        .where(
            Tip.submitter_activity.is_(True),
            Tip.status.in_([TipStatus.NEW, TipStatus.IN_REVIEW, TipStatus.NEEDS_INFO]),
            TipMessage.author == MessageAuthor.SUBMITTER,
        )
        .group_by(Tip.id)
        .having(newest < wrote_before)
        .limit(SWEEP_LIMIT)
    )
    return [
        (tip_id, wrote_on + dt.timedelta(days=settings.submitter_message_overdue_days))
        for tip_id, wrote_on in rows
    ]


def _purges_due(session: Session, settings: Settings, today: dt.date) -> list[tuple[uuid.UUID, dt.date]]:
    rows = session.execute(
        select(Tip.id, Tip.status, Tip.last_activity_on)
        .where(clocks.purge_warning_condition(settings, today))
        .order_by(Tip.last_activity_on, Tip.id)
        .limit(SWEEP_LIMIT)
    )
    due = []
    for tip_id, status, last_activity_on in rows:
        day = clocks.purge_on(status.value, last_activity_on, settings)
        if day is not None:
            due.append((tip_id, day))
    return due


def queue_reminders(session: Session, settings: Settings, today: dt.date) -> int:
    """Queue one lead reminder for the reports that became overdue or came near their purge
    since the last run; returns how many reports it counted."""
    overdue = len(_unreminded(session, Clock.CLAIM, _claims_due(session, settings, today)))
    overdue += len(_unreminded(session, Clock.ANSWER, _answers_due(session, settings, today)))
    nearing_purge = len(_unreminded(session, Clock.RETENTION, _purges_due(session, settings, today)))
    outbox.notify(session, NoticeKind.OVERDUE, Audience.LEADS, count=overdue)
    outbox.notify(session, NoticeKind.RETENTION, Audience.LEADS, count=nearing_purge)
    return overdue + nearing_purge
