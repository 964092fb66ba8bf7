"""Response clocks and the retention horizon: when a report is overdue, and when it will be purged.

Tips carry days, never times (app.kit.clock), so every clock here counts whole UTC days. The
queue marks what these say; `daylight notify` (app.notify.reminders) reminds leads of it, once per
report and deadline. The same rules are written twice, once for one tip (the page) and once as
SQL (the sweep over every tip), side by side so that they cannot drift apart unnoticed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ColumnElement, and_, or_

from app.intake.models import Tip, TipStatus
from app.kit.config import Settings


def claim_days(settings: Settings, *, urgent: bool) -> int:
    return settings.claim_urgent_within_days if urgent else settings.claim_within_days


def claim_overdue(
    tip_status: str, received_on: dt.date, *, urgent: bool, settings: Settings, today: dt.date
) -> bool:
    """Still new (nobody claimed or was assigned it) past its claim deadline."""
    deadline = received_on + dt.timedelta(days=claim_days(settings, urgent=urgent))
    return tip_status == TipStatus.NEW.value and today > deadline


def answer_overdue(wrote_on: dt.date | None, *, unread: bool, settings: Settings, today: dt.date) -> bool:
    """A submitter's message nobody working on the report has read, past its deadline."""
    if not unread or wrote_on is None:
        return False
    return today > wrote_on + dt.timedelta(days=settings.submitter_message_overdue_days)


def retention_periods(settings: Settings) -> dict[str, int]:
    """How long after its last activity a report in each purged state is purged (app.triage.retention)."""
    return {
        TipStatus.NEW.value: settings.retention_stale_new_days,
        TipStatus.REJECTED.value: settings.retention_rejected_days,
    }


def purge_on(tip_status: str, last_activity_on: dt.date, settings: Settings) -> dt.date | None:
    """The first day `daylight purge` deletes the report (it deletes what was last active before
    today minus the period), unless something happens to it first; None: never."""
    days = retention_periods(settings).get(tip_status)
    return None if days is None else last_activity_on + dt.timedelta(days=days + 1)


def purge_warning(
    tip_status: str, last_activity_on: dt.date, settings: Settings, today: dt.date
) -> dt.date | None:
    """The purge day, when it is within the warning period; None otherwise."""
    day = purge_on(tip_status, last_activity_on, settings)
    if day is None or (day - today).days > settings.retention_warning_days:
        return None
    return day


def claim_overdue_condition(settings: Settings, today: dt.date) -> ColumnElement[bool]:
    """`claim_overdue` as SQL."""

    def received_before(days: int) -> ColumnElement[bool]:
        return Tip.received_on < today - dt.timedelta(days=days)

    return and_(
        Tip.status == TipStatus.NEW,
        or_(
            and_(Tip.urgent.is_(True), received_before(settings.claim_urgent_within_days)),
            and_(Tip.urgent.is_(False), received_before(settings.claim_within_days)),
        ),
    )


def purge_warning_condition(settings: Settings, today: dt.date) -> ColumnElement[bool]:
    """`purge_warning` as SQL: the purge day is at most `retention_warning_days` away."""
    clauses = [
        # purge day = last + days + 1 <= today + warning  <=>  last <= today + warning - days - 1
        and_(
            Tip.status == TipStatus(status),
            Tip.last_activity_on <= today + dt.timedelta(days=settings.retention_warning_days - days - 1),
        )
        for status, days in retention_periods(settings).items()
    ]
    return or_(*clauses)
