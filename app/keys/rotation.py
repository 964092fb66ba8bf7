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
it stopped (`run` again with the same credentials):

1. `start`: the new key version, its recovery key (printed once), a grant of it
   to every member who holds the old one, and an `IntakeKeyRotation` row holding
   the new private key sealed to the *old* public key, so whoever can open the
   old key resumes the rotation. Intake seals new tips to the new key from here on.
2. `reseal_batch`, until nothing is left at the old version; opened tips get
   their blind-index tags again under the new key's filter key (the old key's
   tags would match nothing once it is gone).
3. `finish`: the old version's grants, recovery wrap and the rotation row are
   deleted, and the sessions of its holders end (they carry the old key
   unlocked). `run` then compacts the database so the deleted bytes do not
   linger in free space (`scrub_deleted_key_material`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from app.audit import events as audit
from app.auth.models import StaffAccount
from app.auth.service import revoke_sessions
from app.cases.models import CASE_DATA_KEY, Case
from app.crypto import sealing
from app.crypto.contracts import SealedColumn
from app.db import Database
from app.intake.models import (
    FOLLOWUP_ATTACHMENT_KEY,
    MESSAGE_DATA_KEY,
    TIP_ANSWERS,
    TIP_DATA_KEY,
    Tip,
    TipAttachment,
    TipMessage,
    attachment_row_id,
    message_row_id,
)
from app.keys.models import ROTATION_SUCCESSOR_KEY, IntakeKey, IntakeKeyGrant, IntakeKeyRotation
from app.keys.service import (
    create_intake_key,
    current_intake_key,
    grant_intake_key,
    recover_intake_key,
    trusted_intake_public_key,
)
from app.triage import tags
from app.triage.models import TipTag

DEFAULT_BATCH_SIZE = 200

# Tables written by VACUUM FULL on PostgreSQL after a rotation: the key tables and every
# table whose rows held a data key sealed to the old key (their dead tuples still do).
_SCRUBBED_TABLES = (
    "intake_keys",
    "intake_key_grants",
    "intake_key_rotations",
    "staff_sessions",
    "tips",
    "tip_messages",
    "tip_attachments",
    "cases",
    "tip_tags",
)


class RotationRefused(Exception):
    """A rotation cannot start, resume or finish; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class _SealedKeyKind:
    """One kind of row whose data key is sealed to the intake key."""

    name: str
    model: Any  # Tip | TipMessage | TipAttachment | Case: each has the two version columns
    contract: SealedColumn
    row_id: Callable[[Any], str]


SEALED_KEY_KINDS: tuple[_SealedKeyKind, ...] = (
    _SealedKeyKind("tips", Tip, TIP_DATA_KEY, lambda tip: str(tip.id)),
    _SealedKeyKind(
        "messages", TipMessage, MESSAGE_DATA_KEY, lambda message: message_row_id(message.tip_id, message.id)
    ),
    # Files sent with a tip use the tip's data key (intake_key_version NULL): nothing to re-seal.
    _SealedKeyKind(
        "files",
        TipAttachment,
        FOLLOWUP_ATTACHMENT_KEY,
        lambda attachment: attachment_row_id(attachment.tip_id, attachment.id),
    ),
    _SealedKeyKind("cases", Case, CASE_DATA_KEY, lambda case: str(case.id)),
)


@dataclass(frozen=True, slots=True, repr=False)
class Rotation:
    """A rotation under way, with both private keys open (never shown by ``repr``)."""

    from_version: int
    to_version: int
    old_private: sealing.PrivateKey
    new_private: sealing.PrivateKey
    # Printed once when the rotation starts; None when it resumes.
    recovery_key: str | None

    def __repr__(self) -> str:
        return f"Rotation({self.from_version} -> {self.to_version})"


@dataclass(frozen=True, slots=True)
class RotationReport:
    from_version: int
    to_version: int
    resealed: Mapping[str, int]
    holders: int


@dataclass(slots=True)
class _Counts:
    resealed: dict[str, int] = field(default_factory=lambda: {kind.name: 0 for kind in SEALED_KEY_KINDS})


def source_version(session: Session) -> int:
    """The intake key version a rotation moves away from: the one being rotated, or the current one."""
    in_progress = _rotation_in_progress(session)
    if in_progress is not None:
        return in_progress.from_version
    current = current_intake_key(session)
    if current is None:
        raise RotationRefused("there is no intake key here: run `daylight init` first")
    return current.version


def unlock_with_recovery_key(session: Session, recovery_key: str) -> Mapping[int, sealing.PrivateKey]:
    """The source version's private key, opened with its recovery key (ValueError/DecryptionError)."""
    version = source_version(session)
    return {version: recover_intake_key(session.get_one(IntakeKey, version), recovery_key)}


def _rotation_in_progress(session: Session) -> IntakeKeyRotation | None:
    return session.scalars(select(IntakeKeyRotation).with_for_update()).first()


def start(
    session: Session,
    unlocked: Mapping[int, sealing.PrivateKey],
    actor: audit.Actor,
    *,
    key_integrity_key: bytes,
) -> Rotation:
    """Begin a rotation, or pick up the one under way; refused without the source version's key."""
    in_progress = _rotation_in_progress(session)
    if in_progress is not None:
        return _resume(session, in_progress, unlocked, actor, key_integrity_key)
    current = current_intake_key(session)
    if current is None:
        raise RotationRefused("there is no intake key here: run `daylight init` first")
    old_private = unlocked.get(current.version)
    if old_private is None:
        raise RotationRefused(f"these credentials do not open intake key version {current.version}")
    if old_private.public_key().raw != trusted_intake_public_key(current, key_integrity_key).raw:
        raise RotationRefused(f"intake key version {current.version} does not match its public key")
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
            to_version=new_key.version,
            from_version=current.version,
            sealed_successor_key=ROTATION_SUCCESSOR_KEY.seal(
                old_private.public_key(),
                new_private.raw,
                row_id=str(new_key.version),
                key_version=current.version,
            ),
            started_on=new_key.created_on,
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
    old_private = unlocked.get(in_progress.from_version)
    if old_private is None:
        raise RotationRefused(
            f"a rotation from version {in_progress.from_version} is under way: resume it "
            f"with version {in_progress.from_version}'s recovery key or a holder's login"
        )
    new_private = sealing.PrivateKey(
        ROTATION_SUCCESSOR_KEY.open(
            old_private,
            in_progress.sealed_successor_key,
            row_id=str(in_progress.to_version),
            key_version=in_progress.from_version,
        )
    )
    # Anyone can seal *a* key to the old public key: a database writer could have put their own
    # there, to have every data key re-sealed to it. Only the new version's public key, under the
    # key-integrity MAC a database writer cannot forge, says which key is the real successor.
    trusted_public = trusted_intake_public_key(
        session.get_one(IntakeKey, in_progress.to_version), key_integrity_key
    )
    if new_private.public_key().raw != trusted_public.raw:
        raise RotationRefused(
            "the stored successor key is not intake key version "
            f"{in_progress.to_version}: the database was tampered with"
        )
    audit.record(
        session,
        actor,
        "key.rotate.resume",
        object_type="intake_key",
        object_id=in_progress.to_version,
        details={"from_version": in_progress.from_version},
    )
    return Rotation(
        from_version=in_progress.from_version,
        to_version=in_progress.to_version,
        old_private=old_private,
        new_private=new_private,
        recovery_key=None,
    )


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


def remaining(session: Session, from_version: int) -> dict[str, int]:
    """How many rows of each kind still have their data key sealed to ``from_version``."""
    return {
        kind.name: session.scalar(
            select(func.count()).select_from(kind.model).where(kind.model.intake_key_version == from_version)
        )
        or 0
        for kind in SEALED_KEY_KINDS
    }


def reseal_batch(
    session: Session, rotation: Rotation, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> dict[str, int]:
    """Re-seal up to ``batch_size`` data keys from the old version to the new; returns how many of
    each kind. Returns all zeros once nothing is left. Rows are locked first, as every writer does."""
    moved = {kind.name: 0 for kind in SEALED_KEY_KINDS}
    budget = batch_size
    for kind in SEALED_KEY_KINDS:
        if budget == 0:
            break
        rows = list(
            session.scalars(
                select(kind.model)
                .where(kind.model.intake_key_version == rotation.from_version)
                .order_by(kind.model.id)
                .limit(budget)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        )
        for row in rows:
            row_id = kind.row_id(row)
            data_key = kind.contract.open(
                rotation.old_private, row.sealed_data_key, row_id=row_id, key_version=rotation.from_version
            )
            row.sealed_data_key = kind.contract.seal(
                rotation.new_private.public_key(), data_key, row_id=row_id, key_version=rotation.to_version
            )
            row.intake_key_version = rotation.to_version
            if kind.model is Tip and row.indexed:
                _reindex(session, row, data_key, rotation.new_private)
        moved[kind.name] = len(rows)
        budget -= len(rows)
    session.flush()
    return moved


def _reindex(session: Session, tip: Tip, data_key: bytes, new_private: sealing.PrivateKey) -> None:
    """The tip's blind-index tags under the new key's filter key (the old ones die with the old key)."""
    answers = json.loads(
        TIP_ANSWERS.open(
            data_key, tip.answers_encrypted, row_id=str(tip.id), key_version=tip.content_key_version
        )
    )
    session.execute(delete(TipTag).where(TipTag.tip_id == tip.id))
    tip.indexed = False
    tags.index_tip(session, tip, answers, new_private)


def finish(
    session: Session,
    rotation: Rotation,
    actor: audit.Actor,
    resealed: Mapping[str, int],
    *,
    key_integrity_key: bytes,
) -> RotationReport:
    """Destroy the old version once nothing is sealed to it; refused while anything still is."""
    left = remaining(session, rotation.from_version)
    if any(left.values()):
        raise RotationRefused(
            f"{sum(left.values())} data keys are still sealed to version "
            f"{rotation.from_version}: run the rotation again"
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


def scrub_deleted_key_material(database: Database) -> None:
    """Leave no copy of the old wraps in the database's free space or journal.

    SQLite runs with secure_delete (freed pages are zeroed); what is left is the
    write-ahead log, truncated here. PostgreSQL keeps updated and deleted rows as
    dead tuples until a vacuum, and a plain VACUUM only marks them reusable:
    VACUUM FULL rewrites the tables without them. It locks each table for as long
    as the rewrite takes, which is why `daylight keys rotate` is run in a quiet hour.
    """
    if database.engine.dialect.name == "sqlite":
        # Outside any transaction (the engine's connections begin one on first use).
        raw = database.engine.raw_connection()
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()
        return
    with database.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        for table in _SCRUBBED_TABLES:
            connection.execute(text(f"VACUUM FULL {table}"))  # fixed names, not input


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

    ``unlocked`` holds the source version's private key (from its recovery key or a holder's
    login). An exception at any point leaves a state that the same call resumes.
    """
    with database.transaction() as session:
        rotation = start(session, unlocked, actor, key_integrity_key=key_integrity_key)
        total = sum(remaining(session, rotation.from_version).values())
    on_started(rotation)
    counts = _Counts()
    done = 0
    progress(done, total)
    while True:
        with database.transaction() as session:
            moved = reseal_batch(session, rotation, batch_size=batch_size)
        if not any(moved.values()):
            break
        for name, count in moved.items():
            counts.resealed[name] += count
        done += sum(moved.values())
        # Nothing new is sealed to the old key once the rotation started (intake, replies and
        # cases seal to the newest version), so ``total`` only shrinks, as the purge deletes tips.
        total = max(total, done)
        progress(done, total)
    with database.transaction() as session:
        report = finish(session, rotation, actor, counts.resealed, key_integrity_key=key_integrity_key)
    scrub_deleted_key_material(database)
    return report
