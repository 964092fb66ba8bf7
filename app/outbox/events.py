"""Appending to the outbox, in the caller's transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.outbox.models import Audience, NoticeKind, NotificationEvent


def notify(
    session: Session,
    kind: NoticeKind,
    audience: Audience,
    *,
    audience_id: uuid.UUID | None = None,
    excluded_id: uuid.UUID | None = None,
    count: int = 1,
) -> None:
    """Queue a notice of ``kind`` for ``audience``; it commits or rolls back with the caller."""
    if count < 1:
        return
    session.execute(
        insert(NotificationEvent).values(
            kind=kind.value,
            audience=audience.value,
            audience_id=audience_id,
            excluded_id=excluded_id,
            count=count,
        )
    )


def reports_received(session: Session, *, urgent: int, other: int) -> None:
    """New reports: urgent ones reach key holders at once, the others in their digest."""
    notify(session, NoticeKind.URGENT_REPORT, Audience.KEY_HOLDERS, count=urgent)
    notify(session, NoticeKind.NEW_REPORT, Audience.KEY_HOLDERS, count=other)
