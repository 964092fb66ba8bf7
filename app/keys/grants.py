"""Granting and revoking the intake key: a lead who holds it seals it to a member.

Both need a recent step-up (password again within five minutes) and both
reach the member's sessions at once: a grant is used from the next login, a
revocation ends the sessions that carried the unlocked key.

Revoking the grant of the last member who holds the current intake key version (a lead's own
included) leaves nobody who can open reports, and only the offline recovery key to grant the key
again: it is refused unless the request says it means it (`LastKeyHolder`), and the confirmed
revocation is recorded as such.
"""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.confirmation import NotConfirmed, is_confirmed
from app.auth.models import StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES
from app.auth.principal import Principal
from app.auth.sessions import revoke_sessions
from app.crypto import sealing
from app.custody.models import INTAKE_KEY_GRANT, IntakeKey, IntakeKeyGrant
from app.custody.service import (
    current_intake_key,
    revoke_intake_key,
    seal_grant_row,
    trusted_member_public_key,
)
from app.kit import clock
from app.kit.errors import Conflict, Forbidden, NotFound
from app.kit.server_secrets import ServerSecrets


class NotAKeyHolder(Forbidden):
    code = "not_key_holder"
    public_message = "Only a member who holds the intake key can grant it."


class CannotHoldKey(Conflict):
    code = "cannot_hold_key"
    public_message = "Only active caseworkers and leads can hold the intake key."


class LastKeyHolder(Conflict):
    code = "last_key_holder"
    public_message = "This is the last holder of the intake key. Confirm to go ahead."

    def __init__(self, username: str, key_version: int) -> None:
        super().__init__(
            f"{username} is the last holder of intake key version {key_version}: revoking it leaves "
            "only the recovery key. Confirm to go ahead."
        )
        self.username = username
        self.key_version = key_version


def current_key_holders(
    session: Session, *, lock: bool = False
) -> tuple[IntakeKey | None, list[StaffAccount]]:
    """The current intake key version and the active caseworkers and leads who hold a grant of
    it (a deactivated member's leftover grant opens nothing for anyone).

    ``lock``: hold the version's row until the transaction ends, so that two revocations at
    once (two leads revoking each other) cannot both see the other as the one who stays. SQLite
    transactions hold the write lock already; on PostgreSQL this is ``SELECT … FOR UPDATE``."""
    intake_key = current_intake_key(session)
    if intake_key is None:
        return None, []
    if lock:
        session.execute(
            select(IntakeKey.version).where(IntakeKey.version == intake_key.version).with_for_update()
        )
    holders = session.scalars(
        select(StaffAccount)
        .join(IntakeKeyGrant, IntakeKeyGrant.account_id == StaffAccount.id)
        .where(
            IntakeKeyGrant.key_version == intake_key.version,
            StaffAccount.is_active.is_(True),
            StaffAccount.role.in_(KEY_HOLDING_ROLES),
        )
        .order_by(StaffAccount.username)
    )
    return intake_key, list(holders)


def _grantee(session: Session, account_id: uuid.UUID) -> StaffAccount:
    account = session.get(StaffAccount, account_id)
    if account is None:
        raise NotFound
    return account


def _eligible_grantee(session: Session, account_id: uuid.UUID) -> StaffAccount:
    """The account a lead may grant the intake key to: an active caseworker or lead who has
    activated, and whose key pair a lead confirmed with them (app.auth.confirmation)."""
    grantee = _grantee(session, account_id)
    if grantee.role not in KEY_HOLDING_ROLES or not grantee.can_log_in:
        raise CannotHoldKey
    if not is_confirmed(grantee):
        # The key pair may be the making of whoever opened the member's link (the admin who
        # issued it, perhaps): nothing is sealed to it before a lead has compared it.
        raise NotConfirmed
    return grantee


def grant_to_member(
    session: Session, principal: Principal, account_id: uuid.UUID, *, server_secrets: ServerSecrets
) -> IntakeKeyGrant:
    intake_key = current_intake_key(session)
    intake_private = principal.intake_private_key(intake_key.version) if intake_key else None
    if intake_key is None or intake_private is None:
        raise NotAKeyHolder
    grantee = _eligible_grantee(session, account_id)
    grant = grant_intake_key(
        session,
        intake_key=intake_key,
        intake_private=intake_private,
        grantee=grantee,
        granted_by_id=principal.account_id,
        key_integrity_key=server_secrets.key_integrity_key,
    )
    audit.record(
        session,
        principal.actor,
        "key.grant",
        object_type="account",
        object_id=grantee.id,
        details={"key_version": intake_key.version},
    )
    return grant


def revoke_from_member(
    session: Session, principal: Principal, account_id: uuid.UUID, *, confirm_last_holder: bool = False
) -> None:
    """Delete the member's grants and end their sessions. LastKeyHolder, with nothing changed,
    when no one else would hold the current intake key and ``confirm_last_holder`` is not set."""
    grantee = _grantee(session, account_id)
    intake_key, holders = current_key_holders(session, lock=True)
    # The version left with no holder by this revocation, if any.
    orphaned = (
        intake_key.version
        if intake_key is not None and [holder.id for holder in holders] == [grantee.id]
        else None
    )
    if orphaned is not None and not confirm_last_holder:
        raise LastKeyHolder(grantee.username, orphaned)
    revoke_intake_key(session, grantee.id)
    revoke_sessions(session, grantee.id)
    audit.record(
        session,
        principal.actor,
        "key.revoke",
        object_type="account",
        object_id=grantee.id,
        # Confirmed: nobody holds the current version now; only the recovery key can grant it again.
        details=None if orphaned is None else {"last_holder": True, "key_version": orphaned},
    )
    session.flush()


def grant_intake_key(
    session: Session,
    *,
    intake_key: IntakeKey,
    intake_private: sealing.PrivateKey,
    grantee: StaffAccount,
    granted_by_id: uuid.UUID | None,
    key_integrity_key: bytes,
) -> IntakeKeyGrant:
    if grantee.role not in KEY_HOLDING_ROLES:
        # Admins and auditors never hold the key that opens tip content.
        raise ValueError(f"a {grantee.role} cannot hold the intake key")
    if grantee.public_key is None or grantee.public_key_mac is None or not grantee.is_active:
        raise ValueError("the account is not active yet")
    if not is_confirmed(grantee):
        # Here too, for the operator's tools (`keys recover`, `keys grant-first`): they confirm first.
        raise ValueError(
            f"the key pair of {grantee.username} has not been confirmed yet "
            f"(daylight accounts confirm {grantee.username} --fingerprint CODE)"
        )
    session.execute(
        delete(IntakeKeyGrant).where(
            IntakeKeyGrant.account_id == grantee.id, IntakeKeyGrant.key_version == intake_key.version
        )
    )
    grant = IntakeKeyGrant(
        account_id=grantee.id,
        key_version=intake_key.version,
        sealed_private_key=INTAKE_KEY_GRANT.seal(
            trusted_member_public_key(
                session,
                key_integrity_key,
                account_id=grantee.id,
                raw_public_key=grantee.public_key,
                mac=grantee.public_key_mac,
            ),
            intake_private.raw,
            row_id=str(grantee.id),
            key_version=intake_key.version,
        ),
        granted_by_id=granted_by_id,
        granted_on=clock.today(),
    )
    seal_grant_row(session, key_integrity_key, grant)
    session.add(grant)
    session.flush()
    return grant
