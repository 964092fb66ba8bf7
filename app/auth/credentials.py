"""Logging in and changing credentials: one answer and one Argon2id run for every kind of
failure, so neither the answer nor its timing tells which usernames exist or are locked."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.lockout import is_locked, record_failed_login, refusal_reason
from app.auth.login_policy import current_policy
from app.auth.models import Role, StaffAccount
from app.auth.passkeys import AssertionOutcome, RelyingParty, check_assertion, has_usable_passkey
from app.auth.password_keys import (
    needs_rewrap,
    password_matches,
    rewrap_personal_key,
    set_password_and_new_key_pair,
    spend_dummy_runs,
    unwrap_personal_key,
    wrap_under_password,
)
from app.auth.passwords import check_new_password
from app.auth.principal import Principal, UnlockedKeys, account_actor
from app.auth.second_factor import accept_totp, set_totp_secret
from app.auth.sessions import revoke_sessions
from app.crypto import sealing
from app.custody.service import unlock_granted_keys
from app.kit.clock import utc_now
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets


def create_account(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str,
    totp_secret: str,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> tuple[StaffAccount, sealing.PrivateKey]:
    """An account ready to log in (demo, tests, recovery tooling); the admin flow is
    `accounts.invite_account`. Returns the unwrapped personal private key too."""
    account = StaffAccount(
        id=uuid.uuid4(),
        username=username,
        role=role,
        is_active=True,
        totp_last_step=0,
        failed_logins=0,
        created_on=utc_now().date(),
        # Made by the operator's own tooling, not through a link an admin could open.
        confirmed_at=utc_now(),
    )
    personal_private = set_password_and_new_key_pair(
        account,
        password,
        settings=settings,
        server_secrets=server_secrets,
        session=session,
        actor=audit.SYSTEM,
    )
    set_totp_secret(account, totp_secret, server_secrets, confirmed=True)
    session.add(account)
    session.flush()
    return account, personal_private


@dataclass(frozen=True, slots=True)
class PasskeyAttempt:
    """A passkey assertion posted with a login, and what it must have been made for."""

    credential: dict[str, Any] | None
    relying_party: RelyingParty
    # What the login challenge was bound to (the pre-login cookie): app.auth.passkeys.
    binding: bytes


def _second_factor(
    session: Session,
    account: StaffAccount,
    *,
    otp: str,
    passkey: PasskeyAttempt | None,
    totp_key: bytes,
    key_integrity_key: bytes,
    now: dt.datetime,
) -> tuple[str, str | None]:
    """The factor used and, when it failed, why (None when it held)."""
    if passkey is not None and passkey.credential is not None:
        outcome = check_assertion(
            session,
            account,
            passkey.credential,
            rp=passkey.relying_party,
            key_integrity_key=key_integrity_key,
            binding=passkey.binding,
        )
        if outcome is AssertionOutcome.ACCEPTED:
            return "passkey", None
        return "passkey", "clone_suspected" if outcome is AssertionOutcome.CLONE_SUSPECTED else "credentials"
    policy = current_policy(session)
    if policy.passkeys_required and not policy.accepts_totp(
        has_usable_passkey=has_usable_passkey(session, account.id, key_integrity_key)
    ):
        return "totp", "passkey_required"
    return "totp", None if accept_totp(session, account, otp, totp_key, now) else "credentials"


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    otp: str,
    settings: Settings,
    totp_key: bytes,
    key_integrity_key: bytes,
    passkey: PasskeyAttempt | None = None,
    now: dt.datetime | None = None,
) -> tuple[StaffAccount, UnlockedKeys] | None:
    """The account and its unlocked keys, or None: the same answer for every kind of failure.

    Unknown, inactive, not yet activated and locked-out accounts all cost what a
    password check costs (`password_matches`: one Argon2id run per form of the typed
    password, one for most passwords) and get None, so neither the answer nor its timing
    tells which usernames exist, which are locked, or which verifiers predate NFC.

    The second factor is a passkey assertion when one is posted, else the TOTP code, which the
    organisation's policy may refuse (app.auth.login_policy).

    A login that succeeds with a verifier of the password as typed, or of a cost below the
    current settings, wraps the same personal key again (NFC, fresh salt, current cost):
    the key pair and its grants stay valid.
    """
    now = now or utc_now()
    account = session.scalars(select(StaffAccount).where(StaffAccount.username == username)).first()
    if account is None or not account.can_log_in or is_locked(account, now):
        spend_dummy_runs(password, settings)
        # The typed username is not recorded: people type passwords into it.
        audit.record(
            session,
            account_actor(account) if account else audit.Actor(None, None, None),
            "auth.login",
            object_type="account",
            object_id=account.id if account else None,
            outcome=audit.Outcome.DENIED if account else audit.Outcome.FAILURE,
            details={"reason": refusal_reason(account, now)},
        )
        return None
    login_keys = password_matches(account, password)
    factor, refusal = (
        ("password", "credentials")
        if login_keys is None
        else _second_factor(
            session,
            account,
            otp=otp,
            passkey=passkey,
            totp_key=totp_key,
            key_integrity_key=key_integrity_key,
            now=now,
        )
    )
    if login_keys is None or refusal is not None:
        record_failed_login(session, account, now)
        audit.record(
            session,
            account_actor(account),
            "auth.login",
            object_type="account",
            object_id=account.id,
            outcome=audit.Outcome.FAILURE,
            details={"reason": refusal or "credentials"},
        )
        return None
    session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id)
        .values(failed_logins=0, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    personal = unwrap_personal_key(account, login_keys)
    rewrapped = needs_rewrap(account, settings) and rewrap_personal_key(
        session, account, password, personal, settings
    )
    audit.record(
        session,
        account_actor(account),
        "auth.login",
        object_type="account",
        object_id=account.id,
        details={"factor": factor, **({"key_rewrapped": True} if rewrapped else {})},
    )
    keys = UnlockedKeys(
        personal=personal,
        intake=unlock_granted_keys(session, account.id, personal, key_integrity_key=key_integrity_key),
    )
    session.flush()
    return account, keys


def change_password(
    session: Session, principal: Principal, current_password: str, new_password: str, *, settings: Settings
) -> bool:
    """Re-wrap the personal key under a new password; end the member's other sessions.

    The key pair stays the same, so key grants sealed to it keep working.
    False when the current password is wrong.
    """
    account = session.get_one(StaffAccount, principal.account_id)
    check_new_password(new_password, username=account.username)
    if password_matches(account, current_password) is None:
        record_failed_login(session, account, utc_now())
        audit.record(
            session,
            principal.actor,
            "auth.password_change",
            object_type="account",
            object_id=account.id,
            outcome=audit.Outcome.FAILURE,
        )
        return False
    wrap_under_password(account, new_password, principal.keys.personal, settings)
    revoke_sessions(session, account.id, keep_session_id=principal.session_id)
    audit.record(
        session, principal.actor, "auth.password_change", object_type="account", object_id=account.id
    )
    session.flush()
    return True
