"""The second factor: TOTP secrets sealed under the server's TOTP key, and one-time codes
accepted at most once per time step, so a code seen over a shoulder or in a log is spent."""

from __future__ import annotations

import datetime as dt
import hmac

import pyotp
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.auth.models import TOTP_SECRET, StaffAccount
from app.kit.server_secrets import ServerSecrets

TOTP_STEP_SECONDS = 30


TOTP_DIGITS = 6


def new_totp_secret() -> str:
    return pyotp.random_base32()


def set_totp_secret(
    account: StaffAccount, totp_secret: str, server_secrets: ServerSecrets, *, confirmed: bool
) -> None:
    account.totp_secret_encrypted = TOTP_SECRET.seal(
        server_secrets.totp_key, totp_secret.encode(), row_id=str(account.id)
    )
    account.totp_confirmed = confirmed
    account.totp_last_step = 0


def totp_secret_of(account: StaffAccount, totp_key: bytes) -> str:
    if account.totp_secret_encrypted is None:
        raise ValueError("no TOTP secret enrolled")
    return TOTP_SECRET.open(totp_key, account.totp_secret_encrypted, row_id=str(account.id)).decode()


def accept_totp(session: Session, account: StaffAccount, otp: str, totp_key: bytes, now: dt.datetime) -> bool:
    """Accept a code of the current step or one step either side, never a step already used.
    A member who chose a passkey at their link has no TOTP secret: no code is accepted."""
    if account.totp_secret_encrypted is None:
        return False
    totp = pyotp.TOTP(totp_secret_of(account, totp_key), digits=TOTP_DIGITS, interval=TOTP_STEP_SECONDS)
    current_step = int(now.timestamp()) // TOTP_STEP_SECONDS
    accepted_step = None
    typed = otp.strip().encode("utf-8")
    for step in (current_step - 1, current_step, current_step + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), typed) and step > account.totp_last_step:
            accepted_step = step
    if accepted_step is None:
        return False
    # A conditional UPDATE, not read-then-write: of two concurrent logins with
    # the same code, the database lets exactly one advance the step.
    advanced = session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id, StaffAccount.totp_last_step < accepted_step)
        .values(totp_last_step=accepted_step)
        .returning(StaffAccount.id)
        .execution_options(synchronize_session=False)
    ).first()
    return advanced is not None
