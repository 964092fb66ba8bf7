"""Retention: tips rejected, or left in `new`, for longer than the organisation keeps them are
crypto-shredded.

Deleting a tip's row destroys its sealed data key (and its messages' and files'
keys): every copy of its ciphertext, backups included, becomes unreadable. The
files are unlinked after the commit. The audit log keeps one `tip.purge`
event per tip (its id and why): the trail of its existence remains.

Several nodes may run `daylight purge` from cron at once: on PostgreSQL the
first takes a transaction-scoped advisory lock and the others skip; on SQLite
the write lock serialises them and the later ones find nothing left to do.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass, field

from sqlalchemy import and_, or_, select, text
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.intake.models import Tip, TipAttachment, TipStatus
from app.kit.blobs import BlobStorage
from app.kit.config import Settings
from app.kit.db import after_commit
from app.triage.repository import fold_queue_count_changes

# Any constant distinct from the audit checkpoint lock's key.
PURGE_LOCK_KEY = 0x6461796C69676875


@dataclass
class PurgeReport:
    skipped: bool = False  # another node holds the lock
    rejected: int = 0
    stale_new: int = 0
    files: int = 0
    tip_ids: list[uuid.UUID] = field(default_factory=list)


def _lock(session: Session) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True
    return bool(
        session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": PURGE_LOCK_KEY}).scalar()
    )


def purge_expired(
    session: Session, settings: Settings, blobs: BlobStorage, *, today: dt.date | None = None
) -> PurgeReport:
    """Crypto-shred every expired tip, in the caller's transaction."""
    report = PurgeReport()
    if not _lock(session):
        report.skipped = True
        return report
    today = today or dt.datetime.now(dt.UTC).date()
    rejected_before = today - dt.timedelta(days=settings.retention_rejected_days)
    stale_before = today - dt.timedelta(days=settings.retention_stale_new_days)
    expired = list(
        session.scalars(
            select(Tip)
            .where(
                or_(
                    and_(Tip.status == TipStatus.REJECTED, Tip.last_activity_on < rejected_before),
                    and_(Tip.status == TipStatus.NEW, Tip.last_activity_on < stale_before),
                )
            )
            # In id order, as `daylight keys rotate` locks tips: two bulk lockers taking the
            # same rows in different orders could deadlock.
            .order_by(Tip.id)
            .with_for_update()
        )
    )
    purged: list[tuple[uuid.UUID, str]] = []
    for tip in expired:
        reason = "rejected" if tip.status is TipStatus.REJECTED else "stale_new"
        attachment_ids = list(session.scalars(select(TipAttachment.id).where(TipAttachment.tip_id == tip.id)))
        purged.append((tip.id, reason))
        session.delete(tip)
        for attachment_id in attachment_ids:
            after_commit(session, functools.partial(blobs.delete, attachment_id))
        report.files += len(attachment_ids)
        report.tip_ids.append(tip.id)
        if reason == "rejected":
            report.rejected += 1
        else:
            report.stale_new += 1
    # Every row change first (a deletion also updates the duplicates that point at a tip), the
    # audit events last: row locks before the audit append, as in every transaction.
    session.flush()
    # The purged tips' tags and state would otherwise wait in the count change log until the
    # next queue read: folded now, nothing of them outlives the purge's transaction.
    if purged:
        fold_queue_count_changes(session)
    for tip_id, reason in purged:
        audit.record(
            session,
            audit.SYSTEM,
            "tip.purge",
            object_type="tip",
            object_id=tip_id,
            details={"reason": reason},
        )
    session.flush()
    return report
