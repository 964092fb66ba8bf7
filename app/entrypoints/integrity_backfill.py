"""Once, after the upgrade that introduced row MACs: give existing messages and grants theirs.

The migration holds no secret, so it cannot compute a MAC; this runs where the key-integrity
key is held (`daylight init` for a new organisation, the first `daylight serve` after the
upgrade for an existing one) and records that it ran as an audit event. From then on a
message without a valid MAC is one the server did not write, and deleting the event to have
the backfill bless forged rows means deleting from the signed audit log, which its
checkpoints and witnesses expose.
"""

from __future__ import annotations

from sqlalchemy import select

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.custody.models import IntakeKeyGrant
from app.custody.service import seal_grant_row
from app.intake.integrity import seal_message_row
from app.intake.models import TipMessage
from app.kit.db import Database

BACKFILL_EVENT = "integrity.row_macs_backfilled"


def backfill_row_macs(database: Database, key_integrity_key: bytes) -> int | None:
    """The number of rows given a MAC; None when the backfill already ran."""
    with database.transaction() as session:
        done = session.scalar(select(AuditEvent.seq).where(AuditEvent.action == BACKFILL_EVENT).limit(1))
        if done is not None:
            return None
        count = 0
        for message in session.scalars(select(TipMessage).where(TipMessage.row_mac.is_(None))):
            seal_message_row(key_integrity_key, message)
            count += 1
        grants = 0
        for grant in session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.row_mac.is_(None))):
            seal_grant_row(session, key_integrity_key, grant)
            grants += 1
        audit.record(session, audit.SYSTEM, BACKFILL_EVENT, details={"messages": count, "grants": grants})
        return count + grants
