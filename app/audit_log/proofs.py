"""Proofs served from the stored tree: consistency between checkpoints, and one event's evidence.

The node table only makes proofs cheap (O(log² n) lookups); nothing here is trusted by whoever
receives a proof, who checks it against signed roots (app.audit_log.evidence, .witness).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import VerifierKey
from app.audit_log.cosignature import WitnessKey
from app.audit_log.event_stream import EVENT_COLUMNS
from app.audit_log.events import format_time
from app.audit_log.evidence import build_event_proof
from app.audit_log.merkle import consistency_proof, inclusion_proof
from app.audit_log.models import AuditCheckpoint, AuditCosignature, AuditEvent
from app.audit_log.service import DatabaseNodeStore, latest_checkpoint
from app.audit_log.witnesses import valid_cosignatures, witnessed_note

# tlog-witness allows at most 63 proof lines; a tree of 2^63 leaves needs no more.
MAX_PROOF_HASHES = 63


class ProofUnavailable(LookupError):
    """The sizes asked for are not ones the signed tree can prove (the message says why)."""


def consistency_between(session: Session, first: int, second: int) -> list[bytes]:
    """RFC 9162 §2.1.4 proof that the tree at ``first`` leaves is a prefix of the tree at ``second``."""
    latest = latest_checkpoint(session)
    signed = latest.tree_size if latest else 0
    if not 0 <= first <= second:
        raise ProofUnavailable("The first size must not be larger than the second.")
    if second > signed:
        raise ProofUnavailable(f"The newest signed checkpoint is at size {signed}.")
    if first == 0:
        return []
    try:
        return consistency_proof(DatabaseNodeStore(session), first, second)
    except LookupError:
        # Nodes missing below a signed size: the table was altered. The receiver would refuse
        # any proof we could make up, so say so instead.
        raise ProofUnavailable("The stored tree is incomplete; run `daylight audit verify`.") from None


def event_fields(session: Session, seq: int) -> dict[str, Any] | None:
    row = session.execute(select(*EVENT_COLUMNS).where(AuditEvent.seq == seq)).first()
    if row is None:
        return None
    return {
        "seq": row[0],
        "occurred_at": format_time(row[1]),
        "actor_id": None if row[2] is None else str(row[2]),
        "actor": row[3],
        "role": row[4],
        "action": row[5],
        "object_type": row[6],
        "object_id": row[7],
        "outcome": row[8],
        "details": row[9],
    }


def prove_event(
    session: Session,
    seq: int,
    log_key: VerifierKey,
    witness_keys: Sequence[WitnessKey],
    witnesses_required: int,
) -> dict[str, Any]:
    """The offline proof of event ``seq``: the event, its inclusion proof, and the newest checkpoint
    that covers it with enough witness cosignatures (else the newest that covers it at all)."""
    event = event_fields(session, seq)
    if event is None:
        raise ProofUnavailable(f"There is no event {seq}.")
    latest = latest_checkpoint(session)
    if latest is None or latest.tree_size < seq:
        raise ProofUnavailable(f"Event {seq} is not covered by a signed checkpoint yet.")
    chosen = latest
    # Only checkpoints a witness answered for can be witnessed: a short list, newest first.
    cosigned_sizes = session.scalars(
        select(AuditCosignature.tree_size)
        .where(AuditCosignature.tree_size >= seq)
        .distinct()
        .order_by(AuditCosignature.tree_size.desc())
    )
    for size in list(cosigned_sizes):
        checkpoint = session.get(AuditCheckpoint, size)
        if checkpoint is not None and (
            len(valid_cosignatures(session, checkpoint, log_key, witness_keys)) >= witnesses_required
        ):
            chosen = checkpoint
            break
    proof = inclusion_proof(DatabaseNodeStore(session), seq - 1, chosen.tree_size)
    note = witnessed_note(session, chosen, log_key, witness_keys)
    return build_event_proof(event, chosen.tree_size, proof, note)
