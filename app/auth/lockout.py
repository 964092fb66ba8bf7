"""Failed logins and lockout: exponential back-off per account, counted in the database so that
concurrent guesses are all counted, and every lockout audited."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.auth.principal import account_actor
from app.kit.clock import as_utc

LOCKOUT_THRESHOLD = 5


LOCKOUT_MAX = dt.timedelta(days=1)


def refusal_reason(account: StaffAccount | None, now: dt.datetime) -> str:
    if account is None:
        return "unknown_account"
    if is_locked(account, now):
        return "locked"
    return "inactive" if not account.is_active else "not_activated"


def is_locked(account: StaffAccount, now: dt.datetime) -> bool:
    return account.locked_until is not None and now < as_utc(account.locked_until)


def lockout_duration(failures: int) -> dt.timedelta | None:
    """Exponential back-off: 1 minute at the fifth consecutive failure, doubling, at most a day."""
    if failures < LOCKOUT_THRESHOLD:
        return None
    return min(dt.timedelta(minutes=2 ** (failures - LOCKOUT_THRESHOLD)), LOCKOUT_MAX)


def record_failed_login(session: Session, account: StaffAccount, now: dt.datetime) -> None:
    # Incremented in the database, so concurrent failures are all counted.
    failures = session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id)
        .values(failed_logins=StaffAccount.failed_logins + 1)
        .returning(StaffAccount.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    duration = lockout_duration(failures)
    if duration is not None:
        session.execute(
            update(StaffAccount)
            .where(StaffAccount.id == account.id)
            .values(locked_until=now + duration)
            .execution_options(synchronize_session=False)
        )
        audit.record(
            session,
            account_actor(account),
            "auth.lockout",
            object_type="account",
            object_id=account.id,
            details={"failures": failures, "minutes": int(duration.total_seconds() // 60)},
        )
