"""The audit log exported as JSON Lines, with the proofs an outside verifier needs
(app.audit_log.offline checks them)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log.event_stream import EVENT_COLUMNS, STREAM_BATCH
from app.audit_log.events import format_time
from app.audit_log.merkle import consistency_proof, inclusion_proof
from app.audit_log.models import AuditCheckpoint, AuditCosignature, AuditEvent
from app.audit_log.service import DatabaseNodeStore


def export_lines(session: Session, public_key_line: str) -> Iterator[str]:
    """JSON Lines: a header, every event with its entry and an inclusion proof to the latest
    checkpoint that covers it, every checkpoint with its witnesses' cosignatures, and a
    consistency proof between each consecutive pair (so between any two, by chaining)."""
    checkpoints = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)))
    latest = checkpoints[-1] if checkpoints else None
    store = DatabaseNodeStore(session)
    yield json.dumps(
        {"type": "header", "format": "daylight-audit-export/v1", "verifier_key": public_key_line}
    )
    for row in session.execute(select(*EVENT_COLUMNS).order_by(AuditEvent.seq)).yield_per(STREAM_BATCH):
        seq = row[0]
        line: dict[str, object] = {
            "type": "event",
            "seq": seq,
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
        if latest is not None and seq <= latest.tree_size:
            line["inclusion"] = {
                "tree_size": latest.tree_size,
                "proof": [_b64(h) for h in inclusion_proof(store, seq - 1, latest.tree_size)],
            }
        yield json.dumps(line, ensure_ascii=False)
    cosignatures: dict[int, list[str]] = {}
    for size, signature_line in session.execute(
        select(AuditCosignature.tree_size, AuditCosignature.signature_line).order_by(
            AuditCosignature.tree_size, AuditCosignature.witness_id
        )
    ):
        cosignatures.setdefault(size, []).append(signature_line)
    for previous, checkpoint in zip([None, *checkpoints[:-1]], checkpoints, strict=True):
        consistency = (
            None
            if previous is None
            else [_b64(h) for h in consistency_proof(store, previous.tree_size, checkpoint.tree_size)]
        )
        yield json.dumps(
            {
                "type": "checkpoint",
                "tree_size": checkpoint.tree_size,
                "signed_note": checkpoint.signed_note,
                "consistency_from": None if previous is None else previous.tree_size,
                "consistency_proof": consistency,
                # Witness cosignature lines (C2SP tlog-cosignature) as the server received
                # them: append them to signed_note and check them with the witnesses' keys.
                "cosignatures": cosignatures.get(checkpoint.tree_size, []),
            }
        )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
