"""Who may be given work that needs a tip's or a case's content: one rule for assigning a report
and for adding a case member, so the two cannot drift apart.

An account qualifies when it is active, has a role that may hold the intake key (never an admin
or an auditor), has had its key pair confirmed by a lead (app.auth.confirmation) and holds a
grant of the key version the content is sealed to. Without the grant the member would be handed
work they cannot open; with a non-holding role, a role change would be a way around the
separation of duties; unconfirmed, the account may be in the hands of whoever opened its
activation or password-reset link.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.confirmation import is_confirmed
from app.auth.models import StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES
from app.custody.models import IntakeKeyGrant


def content_reader(session: Session, account_id: uuid.UUID, key_version: int) -> StaffAccount | None:
    """The account, if it may read content sealed to ``key_version``; None otherwise."""
    account = session.get(StaffAccount, account_id)
    if (
        account is None
        or not account.is_active
        or account.role not in KEY_HOLDING_ROLES
        or not is_confirmed(account)
    ):
        return None
    holds_key = session.scalar(
        select(IntakeKeyGrant.id).where(
            IntakeKeyGrant.account_id == account_id, IntakeKeyGrant.key_version == key_version
        )
    )
    return account if holds_key is not None else None
