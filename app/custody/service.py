"""Key custody (DESIGN 4): create the intake key, grant it, unlock it, recover it.

The intake private key is never stored in clear: only sealed to the recovery
key pair and to the personal public key of each cleared member.
"""

from __future__ import annotations

import functools
import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.crypto import human_codes, sealing
from app.crypto.integrity import public_key_mac, trusted_public_key
from app.custody.models import INTAKE_KEY_GRANT, INTAKE_KEY_RECOVERY_WRAP, IntakeKey, IntakeKeyGrant
from app.kit import clock

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
    return intake_key, intake_private, recovery_key


def _intake_key_context(version: int) -> tuple[str, int]:
    return ("intake_keys", version)


def staff_key_context(account_id: uuid.UUID) -> tuple[str, str]:
    return ("staff_accounts", str(account_id))


def current_intake_key(session: Session) -> IntakeKey | None:
    return session.scalars(select(IntakeKey).order_by(IntakeKey.version.desc()).limit(1)).first()


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


def unlock_granted_keys(
    session: Session, account_id: uuid.UUID, personal_private: sealing.PrivateKey
) -> dict[int, sealing.PrivateKey]:
    """Every intake key version granted to the account, opened with its personal key."""
    grants = session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account_id))
    return {
        grant.key_version: sealing.PrivateKey(
            INTAKE_KEY_GRANT.open(
                personal_private,
                grant.sealed_private_key,
                row_id=str(account_id),
                key_version=grant.key_version,
            )
        )
        for grant in grants
    }


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
