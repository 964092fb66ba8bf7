"""Intake key rotation (`daylight keys rotate`): a new intake key pair, every data key re-sealed to it.

Why rotate: a key holder's laptop was seized, a member left on bad terms, a
recovery key sheet was seen. Once a rotation ends, the live database opens only
with the new key: a leaked old key plus a later copy of the server reveals
nothing. (Backups made before the rotation still open with the old key; the
operator destroys them or keeps them as carefully as the old key. docs/deploy.md.)

Only the *wraps* change. Each tip, message, follow-up file and case keeps its
random data key, and its content keeps the AAD it was written with
(``content_key_version``); the data key is opened with the old intake key and
sealed to the new one, and ``intake_key_version`` moves. No ciphertext of
content or attachment is rewritten, so a rotation costs two HPKE operations per
row, whatever the size of the files.

The steps, each its own transaction, so an interrupted rotation resumes where
it stopped:

1. `start`: the new key version, its recovery key (printed once), a grant of it
   to every member who holds the old one (the operator confirms the list:
   revoke a suspect member first), and an `IntakeKeyRotation` row saying a
   rotation is under way. Intake seals new reports to the new key from here on.
   Nothing stores the new private key under the old one: the old key may be in
   an adversary's hands, and any copy of the database taken during the rotation
   would then hand them the new key too. Resuming takes both keys: a lead's
   login (which holds both grants after the start) or both recovery keys.
2. `reseal_batch` (app.keys.resealing), until nothing is left at the old
   version, over every kind of row the features register in
   app.crypto.sealed_keys; their hooks follow each row (opened tips get their
   blind-index tags again under the new key's filter key: the old key's tags
   would match nothing once it is gone).
3. `finish`: the old version's grants and recovery wrap and the rotation row
   are deleted, and the sessions of its holders end (they carry the old key
   unlocked). `run` then compacts the database so the deleted bytes do not
   linger in free space (app.keys.scrubbing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES
from app.auth.sessions import revoke_sessions
from app.crypto import sealing
from app.crypto.errors import DecryptionError
from app.custody.models import IntakeKey, IntakeKeyGrant, IntakeKeyRotation
from app.custody.service import (
    create_intake_key,
    current_intake_key,
    recover_intake_key,
    trusted_intake_public_key,
)
from app.keys.grants import grant_intake_key
from app.keys.resealing import (
    DEFAULT_BATCH_SIZE,
    Rotation,
    RotationRefused,
    registered_sealed_data_keys,
    remaining,
    reseal_batch,
)
from app.keys.scrubbing import scrub_deleted_key_material
from app.kit.db import Database

# What callers (the CLI, the keys routes, tests) reach as `rotation.X`, app.keys.resealing's part included.
__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FINISH_ATTEMPTS",
    "ProgressCallback",
    "Rotation",
    "RotationRefused",
    "RotationReport",
    "StillSealedToOldKey",
    "finish",
    "remaining",
    "reseal_batch",
    "run",
    "start",
    "successor_recipients",
    "unlock_with_recovery_keys",
    "versions_to_unlock",
]

# Rows sealed to the old key by a request that began before the rotation (a report whose
# upload started earlier) can appear after the last batch: finish then goes back to the
# batches, this many times at most.
FINISH_ATTEMPTS = 5


class StillSealedToOldKey(RotationRefused):
    """Rows appeared at the old version after the last batch; more batches are needed."""


@dataclass(frozen=True, slots=True)
class RotationReport:
    from_version: int
    to_version: int
    resealed: Mapping[str, int]
    holders: int
    # What `scrub_deleted_key_material` could not do; empty when the old wraps are gone everywhere.
    scrub_problems: Sequence[str] = ()


def _rotation_in_progress(session: Session) -> IntakeKeyRotation | None:
    return session.scalars(select(IntakeKeyRotation)).first()


def versions_to_unlock(session: Session) -> tuple[int, ...]:
    """The intake key versions a rotation needs open: the current one to start; both to resume."""
    in_progress = _rotation_in_progress(session)
    if in_progress is not None:
        return (in_progress.from_version, in_progress.to_version)
    current = current_intake_key(session)
    if current is None:
        raise RotationRefused("there is no intake key here: run `daylight init` first")
    return (current.version,)


def unlock_with_recovery_keys(
    session: Session, versions: Sequence[int], recovery_keys: Sequence[str]
) -> dict[int, sealing.PrivateKey]:
    """Each of ``versions``' private key, opened with whichever of ``recovery_keys`` opens it."""
    unlocked: dict[int, sealing.PrivateKey] = {}
    for version in versions:
        key_row = session.get_one(IntakeKey, version)
        for recovery_key in recovery_keys:
            try:
                unlocked[version] = recover_intake_key(key_row, recovery_key)
                break
            except (ValueError, DecryptionError):
                continue
    return unlocked


def successor_recipients(session: Session) -> list[str]:
    """Who a rotation starting now grants the new key to: the active caseworkers and leads who
    hold the current one. Shown to the operator before anything is written."""
    current = current_intake_key(session)
    if current is None:
        return []
    return list(
        session.scalars(
            select(StaffAccount.username)
            .join(IntakeKeyGrant, IntakeKeyGrant.account_id == StaffAccount.id)
            .where(
                IntakeKeyGrant.key_version == current.version,
                StaffAccount.is_active,
                StaffAccount.role.in_(list(KEY_HOLDING_ROLES)),
            )
            .order_by(StaffAccount.username)
        )
    )


def _trusted_private(
    session: Session, unlocked: Mapping[int, sealing.PrivateKey], version: int, key_integrity_key: bytes
) -> sealing.PrivateKey:
    """The unlocked private key of ``version``, checked against its MAC'd public key.

    Anyone can seal a key of their choosing to a member's public key and write it into that
    member's grant row; a rotation that took such a key as "the new key" would re-seal every
    data key to the writer. The public key, under a MAC that needs the key-integrity secret, says
    which private key is the real one.
    """
    private = unlocked.get(version)
    if private is None:
        raise RotationRefused(f"these credentials do not open intake key version {version}")
    trusted = trusted_intake_public_key(session.get_one(IntakeKey, version), key_integrity_key)
    if private.public_key().raw != trusted.raw:
        raise RotationRefused(
            f"the key opened as version {version} is not intake key version {version}: "
            "the database was tampered with"
        )
    return private


def start(
    session: Session,
    unlocked: Mapping[int, sealing.PrivateKey],
    actor: audit.Actor,
    *,
    key_integrity_key: bytes,
) -> Rotation:
    """Begin a rotation, or pick up the one under way; refused without the keys it needs."""
    current = current_intake_key(session)
    if current is None:
        raise RotationRefused("there is no intake key here: run `daylight init` first")
    # Two rotations started at once: the second waits here, then finds the first's row and
    # resumes it rather than creating a third version (PostgreSQL; SQLite serialises writers).
    session.scalars(select(IntakeKey).where(IntakeKey.version == current.version).with_for_update()).one()
    in_progress = _rotation_in_progress(session)
    if in_progress is not None:
        return _resume(session, in_progress, unlocked, actor, key_integrity_key)
    old_private = _trusted_private(session, unlocked, current.version, key_integrity_key)
    older = session.scalar(
        select(func.count()).select_from(IntakeKey).where(IntakeKey.version != current.version)
    )
    if older:
        raise RotationRefused(
            "older intake key versions are still stored; only one version may exist when a rotation starts"
        )
    new_key, new_private, recovery_key = create_intake_key(
        session, key_integrity_key=key_integrity_key, version=current.version + 1
    )
    session.add(
        IntakeKeyRotation(
            to_version=new_key.version, from_version=current.version, started_on=new_key.created_on
        )
    )
    rotation = Rotation(
        from_version=current.version,
        to_version=new_key.version,
        old_private=old_private,
        new_private=new_private,
        recovery_key=recovery_key,
    )
    holders = _grant_successor_to_holders(session, rotation, key_integrity_key)
    session.flush()
    audit.record(
        session,
        actor,
        "key.rotate.start",
        object_type="intake_key",
        object_id=new_key.version,
        details={
            "from_version": rotation.from_version,
            "to_version": rotation.to_version,
            "holders": holders,
            "to_reseal": sum(remaining(session, rotation.from_version).values()),
        },
    )
    return rotation


def _resume(
    session: Session,
    in_progress: IntakeKeyRotation,
    unlocked: Mapping[int, sealing.PrivateKey],
    actor: audit.Actor,
    key_integrity_key: bytes,
) -> Rotation:
    if in_progress.from_version not in unlocked or in_progress.to_version not in unlocked:
        raise RotationRefused(
            f"a rotation from version {in_progress.from_version} to {in_progress.to_version} is under way: "
            "resume it as a lead who holds both (log in again if the rotation started after your last "
            "login), or with both versions' recovery keys, one per line"
        )
    rotation = Rotation(
        from_version=in_progress.from_version,
        to_version=in_progress.to_version,
        old_private=_trusted_private(session, unlocked, in_progress.from_version, key_integrity_key),
        new_private=_trusted_private(session, unlocked, in_progress.to_version, key_integrity_key),
        recovery_key=None,
    )
    audit.record(
        session,
        actor,
        "key.rotate.resume",
        object_type="intake_key",
        object_id=in_progress.to_version,
        details={"from_version": in_progress.from_version},
    )
    return rotation


def _grant_successor_to_holders(session: Session, rotation: Rotation, key_integrity_key: bytes) -> int:
    """Seal the new key to every member holding the old one and not the new one yet; returns how
    many hold the new key in all. A holder who can no longer hold a key (deactivated) is skipped."""
    new_key = session.get_one(IntakeKey, rotation.to_version)
    has_new = select(IntakeKeyGrant.account_id).where(IntakeKeyGrant.key_version == rotation.to_version)
    pending = session.scalars(
        select(StaffAccount)
        .join(IntakeKeyGrant, IntakeKeyGrant.account_id == StaffAccount.id)
        .where(IntakeKeyGrant.key_version == rotation.from_version, StaffAccount.id.not_in(has_new))
        .order_by(StaffAccount.id)
    )
    for account in pending:
        try:
            grant_intake_key(
                session,
                intake_key=new_key,
                intake_private=rotation.new_private,
                grantee=account,
                granted_by_id=None,
                key_integrity_key=key_integrity_key,
            )
        except ValueError:
            continue  # inactive or no longer in a key-holding role: the old grant dies with the old key
    return (
        session.scalar(
            select(func.count())
            .select_from(IntakeKeyGrant)
            .where(IntakeKeyGrant.key_version == rotation.to_version)
        )
        or 0
    )


def finish(
    session: Session,
    rotation: Rotation,
    actor: audit.Actor,
    resealed: Mapping[str, int],
    *,
    key_integrity_key: bytes,
) -> RotationReport:
    """Destroy the old version once nothing is sealed to it; StillSealedToOldKey while anything is."""
    left = remaining(session, rotation.from_version)
    if any(left.values()):
        raise StillSealedToOldKey(
            f"{sum(left.values())} data keys are still sealed to version {rotation.from_version}: "
            "run the rotation again"
        )
    # Members granted the old key while the rotation ran get the new one too.
    holders = _grant_successor_to_holders(session, rotation, key_integrity_key)
    old_holders = list(
        session.scalars(
            select(IntakeKeyGrant.account_id).where(IntakeKeyGrant.key_version == rotation.from_version)
        )
    )
    for account_id in old_holders:
        # Their sessions carry the old private key, unlocked: ended, like on a revocation.
        revoke_sessions(session, account_id)
    session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.key_version == rotation.from_version))
    session.execute(delete(IntakeKeyRotation).where(IntakeKeyRotation.to_version == rotation.to_version))
    session.execute(delete(IntakeKey).where(IntakeKey.version == rotation.from_version))
    session.flush()
    audit.record(
        session,
        actor,
        "key.rotate.finish",
        object_type="intake_key",
        object_id=rotation.to_version,
        details={
            "from_version": rotation.from_version,
            "to_version": rotation.to_version,
            "holders": holders,
            "sessions_ended_for": len(old_holders),
            **{f"resealed_{name}": count for name, count in resealed.items()},
        },
    )
    return RotationReport(
        from_version=rotation.from_version,
        to_version=rotation.to_version,
        resealed=dict(resealed),
        holders=holders,
    )


ProgressCallback = Callable[[int, int], None]


def run(
    database: Database,
    unlocked: Mapping[int, sealing.PrivateKey],
    actor: audit.Actor,
    *,
    key_integrity_key: bytes,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_started: Callable[[Rotation], None] = lambda rotation: None,
    progress: ProgressCallback = lambda done, total: None,
) -> RotationReport:
    """A whole rotation, one transaction per step: start (or resume), batches, finish, scrub.

    ``unlocked`` holds the private keys of the versions `versions_to_unlock` names (from
    recovery keys or a lead's login). An exception at any point leaves a state that the
    same call resumes.
    """
    with database.transaction() as session:
        rotation = start(session, unlocked, actor, key_integrity_key=key_integrity_key)
        total = sum(remaining(session, rotation.from_version).values())
    on_started(rotation)
    resealed = {kind.name: 0 for kind in registered_sealed_data_keys()}
    done = 0
    progress(done, total)
    for attempt in range(1, FINISH_ATTEMPTS + 1):
        while True:
            with database.transaction() as session:
                moved = reseal_batch(session, rotation, batch_size=batch_size)
            if not any(moved.values()):
                break
            for name, count in moved.items():
                resealed[name] += count
            done += sum(moved.values())
            total = max(total, done)  # late rows (see FINISH_ATTEMPTS) make the total grow
            progress(done, total)
        try:
            with database.transaction() as session:
                report = finish(session, rotation, actor, resealed, key_integrity_key=key_integrity_key)
        except (StillSealedToOldKey, IntegrityError):
            # IntegrityError: on PostgreSQL, a row sealed to the old key was being inserted as
            # the old key was deleted. Either way: more batches, then finish again.
            if attempt == FINISH_ATTEMPTS:
                raise
            continue
        break
    problems = scrub_deleted_key_material(database)
    return RotationReport(
        from_version=report.from_version,
        to_version=report.to_version,
        resealed=report.resealed,
        holders=report.holders,
        scrub_problems=problems,
    )
