"""Key custody (DESIGN 4): create the intake key, grant it, unlock it, recover it.

The intake private key is never stored in clear: only sealed to the recovery
key pair and to the personal public key of each cleared member.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import uuid

from sqlalchemy import Integer, cast, delete, func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.crypto import human_codes, sealing
from app.crypto.integrity import UntrustedPublicKey, public_key_mac, row_mac, trusted_public_key
from app.custody.models import INTAKE_KEY_GRANT, INTAKE_KEY_RECOVERY_WRAP, IntakeKey, IntakeKeyGrant
from app.kit import clock

logger = logging.getLogger("daylight.custody")

RECOVERY_KEY_BITS = 160
RECOVERY_KEY_CHARS = 32


def _recovery_private_key(recovery_key: str) -> sealing.PrivateKey:
    digits = human_codes.normalize(recovery_key, length=RECOVERY_KEY_CHARS)
    if digits is None:
        raise ValueError("not a recovery key")
    return sealing.derive_private_key(digits.encode(), "recovery-key")


def create_intake_key(
    session: Session, *, key_integrity_key: bytes, version: int = 1
) -> tuple[IntakeKey, sealing.PrivateKey, str]:
    """Create an intake key version; returns it, its private half and the recovery key to print once."""
    intake_private = sealing.generate_private_key()
    intake_public = intake_private.public_key()
    recovery_key = human_codes.random_code(RECOVERY_KEY_BITS)
    recovery_public = _recovery_private_key(recovery_key).public_key()
    intake_key = IntakeKey(
        version=version,
        public_key=intake_public.raw,
        public_key_mac=public_key_mac(key_integrity_key, intake_public, *_intake_key_context(version)),
        recovery_public_key=recovery_public.raw,
        recovery_wrapped_private_key=INTAKE_KEY_RECOVERY_WRAP.seal(
            recovery_public, intake_private.raw, row_id=str(version), key_version=version
        ),
        created_on=clock.today(),
    )
    session.add(intake_key)
    session.flush()
    # The version's existence goes into the signed audit log: a database writer who deletes the
    # newest version (to have new tips sealed to an older key, perhaps one rotated away after
    # a compromise) cannot also delete this event unseen (current_intake_key checks it).
    audit.record(session, audit.SYSTEM, INTAKE_KEY_EVENT, object_type="intake_key", object_id=version)
    return intake_key, intake_private, recovery_key


def _intake_key_context(version: int) -> tuple[str, int]:
    return ("intake_keys", version)


def staff_key_context(account_id: uuid.UUID) -> tuple[str, str]:
    return ("staff_accounts", str(account_id))


# Every new personal key pair is an audit event, and its sequence number is the key's epoch:
# the MAC over the stored public key covers the epoch, and a grant checks that the epoch is
# the newest such event in the log. Someone who can write the database but not `secrets/`
# could otherwise restore a member's *old* public key with its old (valid) MAC after an admin
# reset, and have the next grant seal the intake key to a key pair whose private half they
# hold (an old password cracked offline). Rolling the epoch back means deleting audit events,
# which the signed checkpoints and their witnesses expose.
KEY_PAIR_EVENT = "account.key_pair_set"


def member_key_context(account_id: uuid.UUID, epoch: int | None) -> tuple[str | int, ...]:
    """What a member's public key is MACed with: the account, and the key's epoch (None only
    for key pairs made before epochs existed)."""
    if epoch is None:
        return staff_key_context(account_id)
    return (*staff_key_context(account_id), "epoch", epoch)


def newest_key_epoch(session: Session, account_id: uuid.UUID) -> int | None:
    return session.scalar(
        select(func.max(AuditEvent.seq)).where(
            AuditEvent.action == KEY_PAIR_EVENT, AuditEvent.object_id == str(account_id)
        )
    )


class StaleMemberKey(UntrustedPublicKey):
    code = "stale_key"
    public_message = (
        "The member's stored public key is not their newest one (the database was altered); "
        "nothing was sealed to it."
    )


def trusted_member_public_key(
    session: Session, key_integrity_key: bytes, *, account_id: uuid.UUID, raw_public_key: bytes, mac: bytes
) -> sealing.PublicKey:
    """The member's public key, once its MAC holds for the newest key epoch in the audit log.

    The epoch is read from the log, never from the account row: a key pair restored from an
    earlier copy of the database carries a MAC for an older epoch and fails here."""
    epoch = newest_key_epoch(session, account_id)
    try:
        return trusted_public_key(
            key_integrity_key, raw_public_key, mac, *member_key_context(account_id, epoch)
        )
    except UntrustedPublicKey:
        logger.error("integrity alert: a member's stored public key is not their newest key pair")
        raise StaleMemberKey from None


INTAKE_KEY_EVENT = "intake_key.created"


class RolledBackIntakeKey(UntrustedPublicKey):
    code = "intake_key_rolled_back"
    public_message = "The stored intake key is older than the newest one; nothing was sealed."


def newest_logged_intake_version(session: Session) -> int:
    """The newest intake key version the audit log says was created (0 for none). One indexed
    lookup (a handful of rows: one per rotation); not cached, so that no process can hold a
    stale answer for another database."""
    logged = session.scalar(
        select(func.max(cast(AuditEvent.object_id, Integer))).where(AuditEvent.action == INTAKE_KEY_EVENT)
    )
    return logged or 0


def current_intake_key(session: Session) -> IntakeKey | None:
    """The newest intake key version; RolledBackIntakeKey when the audit log knows a newer one
    (its row was deleted: the database was altered)."""
    intake_key = session.scalars(select(IntakeKey).order_by(IntakeKey.version.desc()).limit(1)).first()
    newest = newest_logged_intake_version(session)
    if newest and (intake_key is None or intake_key.version < newest):
        logger.error("integrity alert: the newest intake key version in the database is older than the log's")
        raise RolledBackIntakeKey
    return intake_key


def trusted_intake_public_key(intake_key: IntakeKey, key_integrity_key: bytes) -> sealing.PublicKey:
    return _checked_intake_public_key(
        key_integrity_key, intake_key.version, intake_key.public_key, intake_key.public_key_mac
    )


@functools.lru_cache(maxsize=16)
def _checked_intake_public_key(
    key_integrity_key: bytes, version: int, raw_public_key: bytes, mac: bytes
) -> sealing.PublicKey:
    """The intake public key of ``version`` once its MAC checks, parsed once per process.

    Cached on everything the check reads: a rotation (a new version) or a database writer
    substituting the stored key (other bytes) misses the cache and is checked afresh; a key
    that fails its check raises and is never cached.
    """
    return trusted_public_key(key_integrity_key, raw_public_key, mac, *_intake_key_context(version))


REVOCATION_EVENT = "key.revoke"
GRANT_RECORD = "intake_key_grant/v1"


def revocation_epoch(session: Session, account_id: uuid.UUID) -> int:
    """The sequence number of the member's newest revocation in the audit log (0 for none)."""
    newest = session.scalar(
        select(func.max(AuditEvent.seq)).where(
            AuditEvent.action == REVOCATION_EVENT, AuditEvent.object_id == str(account_id)
        )
    )
    return newest or 0


def grant_mac(key_integrity_key: bytes, grant: IntakeKeyGrant, epoch: int) -> bytes:
    return row_mac(
        key_integrity_key,
        GRANT_RECORD,
        str(grant.account_id),
        grant.key_version,
        hashlib.sha256(grant.sealed_private_key).digest(),
        epoch,
    )


def seal_grant_row(session: Session, key_integrity_key: bytes, grant: IntakeKeyGrant) -> None:
    grant.row_mac = grant_mac(key_integrity_key, grant, revocation_epoch(session, grant.account_id))


def unlock_granted_keys(
    session: Session, account_id: uuid.UUID, personal_private: sealing.PrivateKey, *, key_integrity_key: bytes
) -> dict[int, sealing.PrivateKey]:
    """Every intake key version granted to the account, opened with its personal key."""
    grants = session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account_id))
    unlocked: dict[int, sealing.PrivateKey] = {}
    epoch = revocation_epoch(session, account_id)
    for grant in grants:
        if grant.row_mac is None or not hmac.compare_digest(
            grant.row_mac, grant_mac(key_integrity_key, grant, epoch)
        ):
            # Not written by the server since the member's last revocation: a revoked grant put
            # back, or a row of someone else's making.
            logger.error(
                "integrity alert: a key grant is not the server's since the last revocation; ignored"
            )
            continue
        private_key = sealing.PrivateKey(
            INTAKE_KEY_GRANT.open(
                personal_private,
                grant.sealed_private_key,
                row_id=str(account_id),
                key_version=grant.key_version,
            )
        )
        intake_key = session.get(IntakeKey, grant.key_version)
        # A grant is sealed to the member's public key, which anyone can do: only a private key
        # whose public half is the server's MAC'd intake key of that version is the intake key.
        # Anything else (a database writer's own key pair, to have the member seal or read
        # with it) is dropped.
        if intake_key is None or not _is_intake_key(intake_key, private_key, key_integrity_key):
            logger.error("integrity alert: a key grant does not open the intake key of its version; ignored")
            continue
        unlocked[grant.key_version] = private_key
    return unlocked


def _is_intake_key(intake_key: IntakeKey, private_key: sealing.PrivateKey, key_integrity_key: bytes) -> bool:
    try:
        public = trusted_intake_public_key(intake_key, key_integrity_key)
    except UntrustedPublicKey:
        return False
    return hmac.compare_digest(public.raw, private_key.public_key().raw)


def revoke_intake_key(session: Session, account_id: uuid.UUID) -> None:
    """Delete every grant of the account. Its sessions must end too (they carry the
    unlocked key): callers use `auth.sessions.revoke_sessions`."""
    session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account_id))


def recover_intake_key(intake_key: IntakeKey, recovery_key: str) -> sealing.PrivateKey:
    """Open the recovery wrap; raises ValueError or DecryptionError for a wrong recovery key."""
    return sealing.PrivateKey(
        INTAKE_KEY_RECOVERY_WRAP.open(
            _recovery_private_key(recovery_key),
            intake_key.recovery_wrapped_private_key,
            row_id=str(intake_key.version),
            key_version=intake_key.version,
        )
    )
