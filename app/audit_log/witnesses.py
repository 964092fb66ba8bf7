"""Witnesses as the server keeps them: registration, their credential, and the cosignatures they return.

Nothing here is trusted because it is in the database. A registration counts only with a valid
MAC under the server's key-integrity key (a database writer cannot add a witness of their own);
a stored cosignature counts only when it verifies, under a registered witness key, over a
checkpoint the log's key signed. The witnesses' own state files, on their own machines, are
what a rewritten log cannot get past (app.audit_log.witness).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import Checkpoint, CheckpointError, VerifierKey, open_signed_checkpoint
from app.audit_log.cosignature import (
    WitnessKey,
    note_with_cosignatures,
    open_cosignature,
    parse_witness_verifier_key,
)
from app.audit_log.models import AuditCheckpoint, AuditCosignature, AuditWitness
from app.crypto.binding import bind

TOKEN_PREFIX = "dlw_"  # noqa: S105 - a prefix, not a credential
_TOKEN_BYTES = 32
_SIGNATURE_LINE_PREFIX = "\u2014 "


class WitnessRegistrationError(ValueError):
    """A witness cannot be registered as asked (the message says why, fit for the admin)."""


@dataclass(frozen=True)
class RegisteredWitness:
    """A registration whose MAC holds, with its parsed key."""

    row: AuditWitness
    key: WitnessKey


def _registration_mac(integrity_key: bytes, witness_id: uuid.UUID, name: str, verifier_key: str) -> bytes:
    material = bind("daylight/audit-witness/v1", str(witness_id), name, verifier_key)
    return hmac.new(integrity_key, material, hashlib.sha256).digest()


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def register_witness(
    session: Session, *, verifier_key: str, integrity_key: bytes, registered_by: str | None
) -> tuple[AuditWitness, str]:
    """Register the witness whose C2SP verifier key (type 0x04) this is; returns the row and its
    bearer token, shown once and stored only as a hash."""
    try:
        key = parse_witness_verifier_key(verifier_key.strip())
    except CheckpointError as exc:
        raise WitnessRegistrationError(f"That is not a witness verifier key: {exc}") from None
    if session.scalar(select(AuditWitness.id).where(AuditWitness.name == key.name)) is not None:
        raise WitnessRegistrationError(f"A witness named {key.name} is already registered.")
    token = TOKEN_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(_TOKEN_BYTES)).decode().rstrip("=")
    witness_id = uuid.uuid4()
    canonical = verifier_key.strip()
    witness = AuditWitness(
        id=witness_id,
        name=key.name,
        verifier_key=canonical,
        token_hash=_token_hash(token),
        registration_mac=_registration_mac(integrity_key, witness_id, key.name, canonical),
        registered_at=dt.datetime.now(dt.UTC),
        registered_by=registered_by,
    )
    session.add(witness)
    session.flush()
    return witness, token


def revoke_witness(session: Session, witness_id: uuid.UUID) -> AuditWitness | None:
    witness = session.get(AuditWitness, witness_id)
    if witness is None or witness.revoked_at is not None:
        return None
    witness.revoked_at = dt.datetime.now(dt.UTC)
    session.flush()
    return witness


def _trusted(row: AuditWitness, integrity_key: bytes) -> RegisteredWitness | None:
    expected = _registration_mac(integrity_key, row.id, row.name, row.verifier_key)
    if not hmac.compare_digest(expected, row.registration_mac):
        return None
    try:
        key = parse_witness_verifier_key(row.verifier_key)
    except CheckpointError:
        return None
    return RegisteredWitness(row, key) if key.name == row.name else None


def registered_witnesses(
    session: Session, integrity_key: bytes, *, include_revoked: bool = False
) -> tuple[list[RegisteredWitness], list[AuditWitness]]:
    """(registrations whose MAC holds, rows that fail it: written by someone without the key)."""
    statement = select(AuditWitness).order_by(AuditWitness.registered_at, AuditWitness.name)
    if not include_revoked:
        statement = statement.where(AuditWitness.revoked_at.is_(None))
    trusted: list[RegisteredWitness] = []
    forged: list[AuditWitness] = []
    for row in session.scalars(statement):
        registered = _trusted(row, integrity_key)
        if registered is None:
            forged.append(row)
        else:
            trusted.append(registered)
    return trusted, forged


def witness_for_token(session: Session, token: str, integrity_key: bytes) -> RegisteredWitness | None:
    """The live, trusted witness this bearer token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = session.scalar(select(AuditWitness).where(AuditWitness.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None:
        return None
    return _trusted(row, integrity_key)


class CosignatureRejected(ValueError):
    """Submitted cosignatures that do not verify, or for a checkpoint the log never signed."""


def store_cosignatures(
    session: Session,
    *,
    tree_size: int,
    text: str,
    log_key: VerifierKey,
    witnesses: Sequence[RegisteredWitness],
) -> list[str]:
    """Check each signature line against the registered witnesses and keep the valid ones for
    the checkpoint at ``tree_size``; returns the names of the witnesses whose cosignature was
    kept. Lines by unknown keys are ignored (C2SP signed-note); none valid at all is refused."""
    row = session.get(AuditCheckpoint, tree_size)
    if row is None:
        raise CosignatureRejected(f"No checkpoint at size {tree_size}.")
    checkpoint = _open(row, log_key)
    if checkpoint is None:
        raise CosignatureRejected(f"The checkpoint at size {tree_size} does not verify.")
    lines = [line for line in text.split("\n") if line]
    if not lines or len(lines) > 100 or any(not line.startswith(_SIGNATURE_LINE_PREFIX) for line in lines):
        raise CosignatureRejected("Send one or more note signature lines ('— <name> <base64>').")
    kept: list[str] = []
    now = dt.datetime.now(dt.UTC)
    for line in lines:
        for witness in witnesses:
            try:
                cosigned_at = open_cosignature(checkpoint, line + "\n", witness.key)
            except CheckpointError:
                continue
            existing = session.get(AuditCosignature, {"tree_size": tree_size, "witness_id": witness.row.id})
            if existing is None:
                session.add(
                    AuditCosignature(
                        tree_size=tree_size,
                        witness_id=witness.row.id,
                        signature_line=line + "\n",
                        cosigned_at=cosigned_at,
                        received_at=now,
                    )
                )
            kept.append(witness.row.name)
    if not kept:
        raise CosignatureRejected("No line is a valid cosignature by a registered witness.")
    session.flush()
    return sorted(set(kept))


def _open(row: AuditCheckpoint, log_key: VerifierKey) -> Checkpoint | None:
    try:
        checkpoint = open_signed_checkpoint(row.signed_note, log_key.public_key, origin=log_key.name)
    except CheckpointError:
        return None
    return checkpoint if checkpoint.tree_size == row.tree_size else None


@dataclass(frozen=True)
class Witnessing:
    """Who vouched for what: each witness's newest valid cosigned size, and the newest size with
    enough of them."""

    last_cosigned: dict[str, int]
    witnessed_size: int
    required: int


def _cosigned_by(
    session: Session, row: AuditCheckpoint, log_key: VerifierKey, keys: Sequence[WitnessKey]
) -> dict[str, str]:
    """Witness name → the stored signature line of that witness that verifies over this
    checkpoint (which must itself verify under the log's key)."""
    checkpoint = _open(row, log_key)
    if checkpoint is None:
        return {}
    lines = session.scalars(
        select(AuditCosignature.signature_line).where(AuditCosignature.tree_size == row.tree_size)
    )
    cosigned: dict[str, str] = {}
    for line in lines:
        for key in keys:
            try:
                open_cosignature(checkpoint, line, key)
            except CheckpointError:
                continue
            cosigned.setdefault(key.name, line)
            break
    return cosigned


def valid_cosignatures(
    session: Session, row: AuditCheckpoint, log_key: VerifierKey, keys: Sequence[WitnessKey]
) -> list[str]:
    """The signature lines stored for this checkpoint that verify under one of ``keys``."""
    return list(_cosigned_by(session, row, log_key, keys).values())


def witnessing(
    session: Session, log_key: VerifierKey, keys: Sequence[WitnessKey], required: int
) -> Witnessing:
    """Checks the stored cosignatures against ``keys``, newest checkpoints first, until each
    witness's newest valid one and the newest witnessed size are known."""
    last: dict[str, int] = {}
    witnessed = 0
    sizes = list(
        session.scalars(
            select(AuditCosignature.tree_size).distinct().order_by(AuditCosignature.tree_size.desc())
        )
    )
    for size in sizes if keys else []:
        if len(last) == len(keys) and witnessed:
            break
        row = session.get(AuditCheckpoint, size)
        names = _cosigned_by(session, row, log_key, keys) if row is not None else {}
        for name in names:
            last.setdefault(name, size)
        if not witnessed and len(names) >= required:
            witnessed = size
    return Witnessing(last_cosigned=last, witnessed_size=witnessed, required=required)


def witnessed_note(
    session: Session, row: AuditCheckpoint, log_key: VerifierKey, keys: Sequence[WitnessKey]
) -> str:
    """The checkpoint's signed note with the valid cosignatures appended: what a proof carries."""
    return note_with_cosignatures(row.signed_note, valid_cosignatures(session, row, log_key, keys))
