"""Checking an audit export (JSON Lines) with nothing but the file and the verifier key."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit_log.checkpoint import CheckpointError, open_signed_checkpoint
from app.audit_log.events import canonical_entry
from app.audit_log.merkle import leaf_hash, verify_consistency, verify_inclusion
from app.audit_log.verification import SignedCheckpoint, VerifyReport, verify_entries


def _inclusion_holds(inclusion: dict[str, Any], seq: int, entry: bytes, roots: dict[int, bytes]) -> bool:
    root = roots.get(inclusion.get("tree_size"))  # type: ignore[arg-type]
    if root is None:
        return False
    try:
        proof = [base64.b64decode(node, validate=True) for node in inclusion["proof"]]
    except (TypeError, ValueError, KeyError):
        return False
    return verify_inclusion(leaf_hash(entry), seq - 1, inclusion["tree_size"], proof, root)


def _time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def verify_export(lines: Iterable[str], public_key: Ed25519PublicKey, origin: str) -> VerifyReport:
    """Recompute the tree from the exported events, check every checkpoint, and every
    inclusion and consistency proof in the file against the signed roots.

    A malformed file is a failed verification, never a crash."""
    try:
        return _verify_export(lines, public_key, origin)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        report = VerifyReport(ok=True, size=0, root=b"")
        report.fail(f"the export is malformed ({type(exc).__name__}): it cannot be checked")
        return report


def _verify_export(lines: Iterable[str], public_key: Ed25519PublicKey, origin: str) -> VerifyReport:
    events: list[dict[str, Any]] = []
    checkpoints: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            report = VerifyReport(ok=True, size=0, root=b"")
            report.fail(f"line {number} is not JSON")
            return report
        {"event": events, "checkpoint": checkpoints}.get(record.get("type"), []).append(record)

    entries = [
        (
            e["seq"],
            canonical_entry(
                e["seq"],
                _time(e["occurred_at"]),
                e["actor_id"],
                e["actor"],
                e["role"],
                e["action"],
                e["object_type"],
                e["object_id"],
                e["outcome"],
                e["details"],
            ),
            None,
        )
        for e in events
    ]
    report = verify_entries(
        entries, [SignedCheckpoint(c["tree_size"], c["signed_note"]) for c in checkpoints], public_key, origin
    )
    roots: dict[int, bytes] = {}
    for checkpoint in checkpoints:
        try:
            roots[checkpoint["tree_size"]] = open_signed_checkpoint(
                checkpoint["signed_note"], public_key, origin=origin
            ).root_hash
        except CheckpointError:
            continue  # already reported by verify_entries
    # Events whose inclusion proofs lead to a signed root are proven intact:
    # the first bad event cannot come before the first one that is not.
    first_unproven: int | None = None
    for event, (seq, entry, _) in zip(events, entries, strict=True):
        inclusion = event.get("inclusion")
        proven = isinstance(inclusion, dict) and _inclusion_holds(inclusion, seq, entry, roots)
        if inclusion is not None and not proven:
            report.fail(
                f"event {seq}: its inclusion proof does not lead to the signed root", seq, exact=False
            )
        if not proven and first_unproven is None:
            first_unproven = seq
    if report.bound_bad_seq is not None and first_unproven is not None:
        report.bound_bad_seq = max(report.bound_bad_seq, first_unproven)
    for checkpoint in checkpoints:
        old_size = checkpoint.get("consistency_from")
        if old_size is None:
            continue
        proof = [base64.b64decode(node) for node in checkpoint["consistency_proof"] or []]
        old_root, new_root = roots.get(old_size), roots.get(checkpoint["tree_size"])
        if (
            old_root is None
            or new_root is None
            or not verify_consistency(old_size, checkpoint["tree_size"], old_root, new_root, proof)
        ):
            report.fail(f"checkpoint {checkpoint['tree_size']} is not consistent with checkpoint {old_size}")
    return report
