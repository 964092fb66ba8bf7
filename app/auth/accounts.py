"""Account lifecycle: an admin invites, changes and resets; the member acts on one-time links.

An admin never learns a member's password or second factor: invitation,
password reset and 2FA reset each produce a single-use link, valid 24 hours,
that only the member completes. Every change reaches existing sessions at
once, by ending them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth import passkeys
from app.auth.models import AccountLink, LinkPurpose, Role, StaffAccount, StaffPasskey
from app.auth.password_keys import password_matches, set_password_and_new_key_pair
from app.auth.passwords import check_new_password
from app.auth.permissions import KEY_HOLDING_ROLES
from app.auth.principal import account_actor
from app.auth.second_factor import accept_totp, new_totp_secret, set_totp_secret, totp_secret_of
from app.auth.sessions import decode_token, encode_token, revoke_sessions
from app.crypto.binding import bind
from app.custody.models import IntakeKeyGrant
from app.kit.clock import as_utc, utc_now
from app.kit.config import Settings
from app.kit.errors import AppError, Conflict, NotFound
from app.kit.server_secrets import ServerSecrets

LINK_LIFETIME = dt.timedelta(hours=24)


class LinkInvalid(AppError):
    status = 404
    code = "link_invalid"
    public_message = "This link is not valid: it was used already, has expired, or was replaced."


class CodeRejected(AppError):
    status = 422
    code = "code_rejected"
    public_message = "The one-time code did not match. Check your authenticator app's clock and try again."


class CurrentPasswordRejected(AppError):
    status = 422
    code = "password_rejected"
    public_message = "Your current password did not match."


class UsernameTaken(Conflict):
    code = "username_taken"
    public_message = "That username is taken."


class OwnAccount(Conflict):
    code = "own_account"
    public_message = "Admins cannot change their own role or deactivate themselves."


def _link_hash(token: bytes) -> bytes:
    return hashlib.sha256(bind("daylight/account-link/v1", token)).digest()


def issue_link(
    session: Session,
    account: StaffAccount,
    purpose: LinkPurpose,
    *,
    actor: audit.Actor,
    server_secrets: ServerSecrets,
) -> str:
    """A new one-time link token (replacing any earlier one of the same purpose)."""
    session.execute(
        delete(AccountLink).where(AccountLink.account_id == account.id, AccountLink.purpose == purpose)
    )
    if purpose in (LinkPurpose.ACTIVATION, LinkPurpose.TOTP_RESET):
        # A fresh secret the member will prove with a code; until then no login.
        set_totp_secret(account, new_totp_secret(), server_secrets, confirmed=False)
    token = secrets.token_bytes(32)
    session.add(
        AccountLink(
            token_hash=_link_hash(token),
            account_id=account.id,
            purpose=purpose,
            created_by_id=actor.id,
            expires_at=utc_now() + LINK_LIFETIME,
        )
    )
    revoke_sessions(session, account.id)
    audit.record(
        session,
        actor,
        "account.link_issued",
        object_type="account",
        object_id=account.id,
        details={"purpose": purpose.value},
    )
    session.flush()
    return encode_token(token)


@dataclass(frozen=True, slots=True)
class OpenLink:
    link: AccountLink
    account: StaffAccount


def open_link(session: Session, token_value: str, now: dt.datetime | None = None) -> OpenLink:
    token = decode_token(token_value)
    row = (
        None
        if token is None
        else session.execute(
            select(AccountLink, StaffAccount)
            .join(StaffAccount, StaffAccount.id == AccountLink.account_id)
            .where(AccountLink.token_hash == _link_hash(token))
        ).first()
    )
    if row is None:
        raise LinkInvalid
    link, account = row
    if not account.is_active or (now or utc_now()) >= as_utc(link.expires_at):
        raise LinkInvalid
    return OpenLink(link=link, account=account)


def enrolment_secret(opened: OpenLink, server_secrets: ServerSecrets) -> str | None:
    """The TOTP secret to show on an activation or 2FA-reset page (None for a password reset)."""
    if opened.link.purpose is LinkPurpose.PASSWORD_RESET:
        return None
    return totp_secret_of(opened.account, server_secrets.totp_key)


def complete_link(
    session: Session,
    opened: OpenLink,
    *,
    otp: str,
    new_password: str | None,
    current_password: str | None,
    settings: Settings,
    server_secrets: ServerSecrets,
    enrol_passkey: Callable[[StaffAccount], StaffPasskey] | None = None,
    prove_passkey: Callable[[StaffAccount], bool] | None = None,
) -> None:
    """Finish what the link is for. The link is used up only when everything succeeded.

    The second factor is the TOTP code, or a passkey: with ``enrol_passkey`` (activation and
    2FA reset) one the member creates on the link's page, with ``prove_passkey`` (password
    reset) an assertion by one they already have."""
    account, purpose = opened.account, opened.link.purpose
    if purpose in (LinkPurpose.ACTIVATION, LinkPurpose.PASSWORD_RESET):
        check_new_password(new_password or "", username=account.username)
    if purpose is LinkPurpose.TOTP_RESET and (
        current_password is None or password_matches(account, current_password) is None
    ):
        raise CurrentPasswordRejected
    new_passkey = None
    if enrol_passkey is not None and purpose is not LinkPurpose.PASSWORD_RESET:
        new_passkey = enrol_passkey(account)
        # The member chose a passkey: the TOTP secret this link's page showed (to whoever opened
        # it) is dropped, so no code can ever stand in for the passkey.
        account.totp_secret_encrypted = None
    elif prove_passkey is not None and purpose is LinkPurpose.PASSWORD_RESET:
        if not prove_passkey(account):
            raise passkeys.PasskeyRejected
    elif not accept_totp(session, account, otp, server_secrets.totp_key, utc_now()):
        raise CodeRejected
    if purpose is LinkPurpose.TOTP_RESET:
        # A second-factor reset is for a lost or stolen device: the passkeys enrolled before it
        # stop working, whichever factor the member sets up now.
        passkeys.revoke_all(
            session,
            account.id,
            actor=account_actor(account),
            keep=new_passkey.id if new_passkey is not None else None,
        )
    if purpose in (LinkPurpose.ACTIVATION, LinkPurpose.PASSWORD_RESET):
        assert new_password is not None  # noqa: S101 - checked by check_new_password above
        set_password_and_new_key_pair(
            account,
            new_password,
            settings=settings,
            server_secrets=server_secrets,
            session=session,
            actor=account_actor(account),
        )
        # Grants were sealed to the old key pair, which nobody can open now:
        # the member needs a lead to grant the intake key again.
        session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account.id))
        # Whoever holds the link chose this password and key pair, and the admin who issued
        # the link may have opened it themselves. Until a lead has compared the new key's
        # fingerprint with the member (app.auth.confirmation), no key grant is offered.
        account.confirmed_at = None
        account.confirmed_by_id = None
    account.totp_confirmed = True
    account.failed_logins = 0
    account.locked_until = None
    session.delete(opened.link)
    revoke_sessions(session, account.id)
    audit.record(
        session,
        account_actor(account),
        "account.link_completed",
        object_type="account",
        object_id=account.id,
        details={"purpose": purpose.value},
    )
    session.flush()


def active_admins(session: Session) -> list[str]:
    """The usernames of active admins, activated or not: with none, `daylight accounts invite`
    may create the organisation's first admin from the command line."""
    return list(
        session.scalars(
            select(StaffAccount.username)
            .where(StaffAccount.role == Role.ADMIN, StaffAccount.is_active.is_(True))
            .order_by(StaffAccount.username)
        )
    )


def invite_account(
    session: Session,
    *,
    username: str,
    role: Role,
    actor: audit.Actor,
    server_secrets: ServerSecrets,
    details: Mapping[str, audit.DetailValue] | None = None,
) -> tuple[StaffAccount, str]:
    """A new account with no password yet, and its activation link token. ``details`` go into
    the `account.create` event besides the role (the command line's: who ran it and why)."""
    if session.scalars(select(StaffAccount.id).where(StaffAccount.username == username)).first():
        raise UsernameTaken
    account = StaffAccount(
        id=uuid.uuid4(),
        username=username,
        role=role,
        is_active=True,
        totp_confirmed=False,
        totp_last_step=0,
        failed_logins=0,
        created_on=utc_now().date(),
    )
    session.add(account)
    session.flush()
    audit.record(
        session,
        actor,
        "account.create",
        object_type="account",
        object_id=account.id,
        details={**(details or {}), "role": role.value},
    )
    token = issue_link(session, account, LinkPurpose.ACTIVATION, actor=actor, server_secrets=server_secrets)
    return account, token


def account_for_admin(session: Session, account_id: uuid.UUID) -> StaffAccount:
    account = session.get(StaffAccount, account_id)
    if account is None:
        raise NotFound
    return account


def update_account(
    session: Session, account: StaffAccount, *, actor: audit.Actor, role: Role | None, is_active: bool | None
) -> None:
    """Change role or activity; both end the member's sessions at once."""
    if account.id == actor.id and ((role is not None and role != account.role) or is_active is False):
        raise OwnAccount
    changed = False
    if role is not None and role != account.role:
        account.role = role
        if role not in KEY_HOLDING_ROLES:
            session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account.id))
        changed = True
    if is_active is not None and is_active != account.is_active:
        account.is_active = is_active
        changed = True
    if changed:
        revoke_sessions(session, account.id)
        audit.record(
            session,
            actor,
            "account.update",
            object_type="account",
            object_id=account.id,
            details={"role": Role(account.role).value, "is_active": account.is_active},
        )
    session.flush()


def list_accounts(session: Session) -> list[StaffAccount]:
    return list(session.scalars(select(StaffAccount).order_by(StaffAccount.username)))


def accounts_holding_keys(session: Session) -> set[uuid.UUID]:
    return set(session.scalars(select(IntakeKeyGrant.account_id).distinct()))


def usernames(session: Session, account_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    """Usernames by account id, in one query; ids of deleted accounts and None are left out."""
    ids = {account_id for account_id in account_ids if account_id is not None}
    if not ids:
        return {}
    return dict(
        session.execute(select(StaffAccount.id, StaffAccount.username).where(StaffAccount.id.in_(ids))).all()
    )
