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
2. `reseal_batch`, until nothing is left at the old version; opened tips get
   their blind-index tags again under the new key's filter key (the old key's
   tags would match nothing once it is gone).
3. `finish`: the old version's grants and recovery wrap and the rotation row
   are deleted, and the sessions of its holders end (they carry the old key
   unlocked). `run` then compacts the database so the deleted bytes do not
   linger in free space (`scrub_deleted_key_material`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES
from app.auth.service import revoke_sessions
from app.cases.models import CASE_DATA_KEY, Case
from app.crypto import sealing
from app.crypto.contracts import SealedColumn
from app.crypto.errors import DecryptionError
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
from app.keys.models import IntakeKey, IntakeKeyGrant, IntakeKeyRotation
from app.keys.service import (
    create_intake_key,
    current_intake_key,
    grant_intake_key,
    recover_intake_key,
    trusted_intake_public_key,
)
from app.kit.db import Database
from app.triage import tags
from app.triage.models import TipTag

DEFAULT_BATCH_SIZE = 200
# Rows sealed to the old key by a request that began before the rotation (a report whose
# upload started earlier) can appear after the last batch: finish then goes back to the
# batches, this many times at most.
FINISH_ATTEMPTS = 5
CHECKPOINT_ATTEMPTS = 20

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


class StillSealedToOldKey(RotationRefused):
    """Rows appeared at the old version after the last batch; more batches are needed."""


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


def scrub_deleted_key_material(database: Database) -> list[str]:
    """Leave no copy of the old wraps in the database's free space or journal; returns what could
    not be done (empty when all was), for the operator to finish by hand.

    SQLite runs with secure_delete (freed pages are zeroed); what is left is the
    write-ahead log, truncated here once no reader holds it. PostgreSQL keeps
    updated and deleted rows as dead tuples until a vacuum, and a plain VACUUM
    only marks them reusable: VACUUM FULL rewrites the tables without them. It
    locks each table for as long as the rewrite takes, which is why `daylight
    keys rotate` is run in a quiet hour. Neither reaches WAL archives, replicas
    or backups: docs/deploy.md.
    """
    if database.engine.dialect.name == "sqlite":
        # Outside any transaction (the engine's connections begin one on first use).
        raw = database.engine.raw_connection()
        try:
            for _ in range(CHECKPOINT_ATTEMPTS):
                busy, _, _ = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return []
                time.sleep(0.25)  # a reader (an app node) holds the log; it lets go between requests
        finally:
            raw.close()
        return [
            "the SQLite write-ahead log is still in use: run PRAGMA wal_checkpoint(TRUNCATE) once "
            "the service is stopped"
        ]
    problems = []
    with database.engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        for table in _SCRUBBED_TABLES:
            try:
                autocommit.execute(text(f"VACUUM FULL {table}"))  # fixed names, not input
            except Exception as exc:  # one table's failure must not skip the others
                problems.append(f"VACUUM FULL {table} failed ({type(exc).__name__}): run it again by hand")
    return problems


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
    resealed = {kind.name: 0 for kind in SEALED_KEY_KINDS}
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
