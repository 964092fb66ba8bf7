"""An offline proof of one audit event: the event, its inclusion proof, and a cosigned checkpoint.

The document answers a single question for someone who trusts neither Daylight's server nor its operator
(a court, a journalist, the person the event is about): "was this exact event in the audit log, at this
position, in a tree the log signed and independent witnesses saw?" It needs only the log's verifier key
and the witnesses' keys::

    {
      "format": "daylight-audit-event-proof/v1",
      "event": {"seq": 7, "occurred_at": "2026-01-01T00:00:00.000000Z", "actor_id": ..., "actor": ...,
                "role": ..., "action": ..., "object_type": ..., "object_id": ..., "outcome": ...,
                "details": ...},
      "leaf_index": 6,
      "tree_size": 12,
      "inclusion_proof": ["<base64 hash>", ...],
      "checkpoint": "<signed note, with witness cosignature lines appended>"
    }

``event`` holds the fields exactly as the JSON Lines export writes them. The verifier recomputes the leaf
from them, so the text a reader sees is the text that is proven.

Threats answered: an edited event (any field, including its position) no longer hashes to a leaf on the
signed path; a forged or swapped checkpoint fails the log signature; a log operator who signs a rewritten
history for this one reader fails the witness quorum, since witnesses only cosign trees they saw grow
append-only. Every field is parsed strictly, with one accepted spelling per value (canonical base64,
canonical timestamps and UUIDs, no duplicate JSON keys), so no byte of a document can change while it still
verifies.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeGuard

from app.audit_log.checkpoint import (
    MAX_NUMBER,
    CheckpointError,
    VerifierKey,
    _decode_canonical_base64,
    _parse_body,
    _split_signed_note,
    open_signed_checkpoint,
)
from app.audit_log.cosignature import WitnessKey, cosignatures_by
from app.audit_log.events import canonical_entry, format_time
from app.audit_log.merkle import HASH_SIZE, leaf_hash, verify_inclusion
from app.audit_log.offline import _time as _parse_export_time

FORMAT = "daylight-audit-event-proof/v1"
EVENT_FIELDS = (
    "seq",
    "occurred_at",
    "actor_id",
    "actor",
    "role",
    "action",
    "object_type",
    "object_id",
    "outcome",
    "details",
)
_DOCUMENT_FIELDS = frozenset({"format", "event", "leaf_index", "tree_size", "inclusion_proof", "checkpoint"})
# A path in a tree of fewer than 2^63 leaves has at most 63 hashes.
MAX_INCLUSION_PROOF_LENGTH = 63


class EventProofError(ValueError):
    """An event proof cannot be built from these inputs (they do not prove what they claim)."""


@dataclass
class EventProofReport:
    """The outcome of ``verify_event_proof``. ``ok`` only when ``problems`` is empty.

    ``seq`` and ``tree_size`` are what the document claims, as far as they could be read; ``witnessed_by``
    names the trusted witnesses whose cosignature verified; ``checkpoint_time`` is the log's ``time`` line,
    once its signature verified.
    """

    ok: bool
    seq: int | None
    tree_size: int | None
    witnessed_by: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checkpoint_time: int | None = None


def _is_number(value: object, minimum: int) -> TypeGuard[int]:
    # JSON gives floats and booleans too; int(1.0) and True == 1 must not slip through as numbers.
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_NUMBER


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise EventProofError(f"the event's {name} must be text")
    try:
        value.encode("utf-8")  # json.loads lets lone surrogates through; they have no UTF-8 encoding
    except UnicodeEncodeError:
        raise EventProofError(f"the event's {name} is not valid Unicode text") from None
    return value


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, f"{name} (text or null)")


def _event_entry(event: Mapping[str, object]) -> tuple[int, bytes]:
    """(seq, canonical entry) of an event in export form; EventProofError unless every field is canonical.

    canonical_entry normalises some spellings (a timestamp without microseconds, an upper-case UUID) to the
    same bytes; accepting those would let a document's text change while it still verifies.
    """
    seq = event["seq"]
    if not _is_number(seq, 1):
        raise EventProofError(f"the event's seq must be an integer from 1 to {MAX_NUMBER}")
    occurred_at = _text(event["occurred_at"], "occurred_at")
    try:
        moment = _parse_export_time(occurred_at)
    except ValueError:
        raise EventProofError("the event's occurred_at is not a YYYY-MM-DDTHH:MM:SS.ffffffZ time") from None
    if format_time(moment) != occurred_at:
        raise EventProofError("the event's occurred_at is not in canonical form (six-digit microseconds)")
    actor_id = _optional_text(event["actor_id"], "actor_id")
    if actor_id is not None:
        try:
            canonical_id = str(uuid.UUID(actor_id))
        except ValueError:
            raise EventProofError("the event's actor_id is not a UUID") from None
        if canonical_id != actor_id:
            raise EventProofError("the event's actor_id is not a lower-case hyphenated UUID")
    entry = canonical_entry(
        seq,
        moment,
        actor_id,
        _optional_text(event["actor"], "actor"),
        _optional_text(event["role"], "role"),
        _text(event["action"], "action"),
        _optional_text(event["object_type"], "object_type"),
        _optional_text(event["object_id"], "object_id"),
        _text(event["outcome"], "outcome"),
        _text(event["details"], "details"),
    )
    return seq, entry


def build_event_proof(
    event: Mapping[str, object], tree_size: int, proof: Sequence[bytes], note_with_cosignatures: str
) -> dict[str, object]:
    """The proof document for ``event`` (export form; a datetime ``occurred_at`` or UUID ``actor_id`` is
    converted to it, other keys such as ``type`` are left out) in the tree of ``tree_size`` leaves.

    ``proof`` is the inclusion proof of leaf ``seq - 1`` in that tree; ``note_with_cosignatures`` is the
    log-signed checkpoint of that size with the witnesses' lines appended (``note_with_cosignatures`` in
    app.audit_log.cosignature). Signatures are not checked here (no keys), but the proof must lead from the
    event to the note's root: a server never hands out a document that cannot verify. Raises
    EventProofError.
    """
    try:
        fields = {name: event[name] for name in EVENT_FIELDS}
    except KeyError as exc:
        raise EventProofError(f"the event has no {exc.args[0]!r} field") from None
    if isinstance(fields["occurred_at"], dt.datetime):
        fields["occurred_at"] = format_time(fields["occurred_at"])
    if isinstance(fields["actor_id"], uuid.UUID):
        fields["actor_id"] = str(fields["actor_id"])
    seq, entry = _event_entry(fields)
    if not _is_number(tree_size, 1) or seq > tree_size:
        raise EventProofError(f"event {seq} is not in a tree of {tree_size!r} leaves")
    try:
        checkpoint = _parse_body(_split_signed_note(note_with_cosignatures)[0])
    except CheckpointError as exc:
        raise EventProofError(f"the checkpoint is malformed: {exc}") from None
    if checkpoint.tree_size != tree_size:
        raise EventProofError(f"the checkpoint is for {checkpoint.tree_size} leaves, not {tree_size}")
    hashes = list(proof)
    if not verify_inclusion(leaf_hash(entry), seq - 1, tree_size, hashes, checkpoint.root_hash):
        raise EventProofError(f"the inclusion proof does not lead from event {seq} to the checkpoint's root")
    return {
        "format": FORMAT,
        "event": fields,
        "leaf_index": seq - 1,
        "tree_size": tree_size,
        "inclusion_proof": [base64.b64encode(node).decode("ascii") for node in hashes],
        "checkpoint": note_with_cosignatures,
    }


def _check_witness_policy(witness_keys: Sequence[WitnessKey], witnesses_required: int) -> None:
    """Refuse a policy one witness could satisfy twice: counted by name, so names and keys are distinct."""
    names = [key.name for key in witness_keys]
    raw_keys = [key.public_key.public_bytes_raw() for key in witness_keys]
    if len(set(names)) != len(names) or len(set(raw_keys)) != len(raw_keys):
        raise ValueError("each trusted witness must have its own name and its own key")
    if not (isinstance(witnesses_required, int) and 0 <= witnesses_required <= len(witness_keys)):
        raise ValueError(f"witnesses_required must be from 0 to the {len(witness_keys)} witnesses trusted")


def verify_event_proof(
    document: object, log_key: VerifierKey, witness_keys: Sequence[WitnessKey], witnesses_required: int
) -> EventProofReport:
    """Check a parsed proof document: the event is leaf ``seq - 1`` of the tree in a checkpoint signed by
    ``log_key`` (its name is the origin), and at least ``witnesses_required`` of ``witness_keys`` cosigned
    that checkpoint.

    A malformed document is a failed report with a problem that says what is wrong, never an exception.
    A cosignature line that claims a trusted witness but does not verify fails the report too, even when
    the quorum is met without it: it is a forgery. Raises ValueError only for a bad policy (duplicate
    witnesses, a quorum larger than the witnesses given): that is the caller's mistake, not the document's.
    """
    _check_witness_policy(witness_keys, witnesses_required)
    report = EventProofReport(ok=False, seq=None, tree_size=None)
    try:
        _verify_document(document, log_key, witness_keys, witnesses_required, report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        # Every field is checked before use; this is the net under "never crash" for anything missed.
        report.problems.append(f"the proof is malformed ({type(exc).__name__}): it cannot be checked")
    report.ok = not report.problems
    return report


def verify_event_proof_text(
    text: str | bytes, log_key: VerifierKey, witness_keys: Sequence[WitnessKey], witnesses_required: int
) -> EventProofReport:
    """``verify_event_proof`` of a JSON text, parsed strictly.

    Duplicate keys are refused: ``{"actor": "a", "actor": "b"}`` would show a person one value while the
    parser checks the other. So are NaN and the infinities, which are not JSON.
    """
    _check_witness_policy(witness_keys, witnesses_required)
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        problem = str(exc) if isinstance(exc, _StrictJsonError) else "the proof is not valid JSON"
        return EventProofReport(ok=False, seq=None, tree_size=None, problems=[problem])
    return verify_event_proof(document, log_key, witness_keys, witnesses_required)


class _StrictJsonError(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise _StrictJsonError(f"the proof has the key {key!r:.80} twice")
        result[key] = value
    return result


def _refuse_constant(name: str) -> object:
    raise _StrictJsonError(f"the proof contains {name}, which is not JSON")


def _verify_document(
    document: object,
    log_key: VerifierKey,
    witness_keys: Sequence[WitnessKey],
    witnesses_required: int,
    report: EventProofReport,
) -> None:
    problems = report.problems
    if not isinstance(document, dict):
        problems.append("the proof is not a JSON object")
        return
    if document.get("format") != FORMAT:
        problems.append(f"the proof's format is {document.get('format')!r:.80}, not {FORMAT!r}")
        return
    if set(document) != _DOCUMENT_FIELDS:
        missing, unknown = _DOCUMENT_FIELDS - set(document), set(document) - _DOCUMENT_FIELDS
        problems.append(
            f"the proof's fields are wrong (missing: {sorted(missing)}, unknown: {sorted(unknown)})"
        )
        return

    entry: bytes | None = None
    event = document["event"]
    if not isinstance(event, dict) or set(event) != set(EVENT_FIELDS):
        problems.append(f"the event must be an object with exactly the fields {', '.join(EVENT_FIELDS)}")
    else:
        if _is_number(event["seq"], 1):
            report.seq = event["seq"]
        try:
            _, entry = _event_entry(event)
        except EventProofError as exc:
            problems.append(str(exc))

    tree_size = document["tree_size"]
    if _is_number(tree_size, 1):
        report.tree_size = tree_size
    else:
        problems.append(f"the tree size must be an integer from 1 to {MAX_NUMBER}")
    leaf_index = document["leaf_index"]
    if report.seq is not None and (not _is_number(leaf_index, 0) or leaf_index != report.seq - 1):
        problems.append(f"the leaf index must be {report.seq - 1}, one less than the event's seq")
    if report.seq is not None and report.tree_size is not None and report.seq > report.tree_size:
        problems.append(f"event {report.seq} cannot be in a tree of {report.tree_size} leaves")

    proof = _inclusion_proof(document["inclusion_proof"], problems)

    note = document["checkpoint"]
    try:
        checkpoint = open_signed_checkpoint(note, log_key.public_key, origin=log_key.name)
    except CheckpointError as exc:
        problems.append(f"the checkpoint is not signed by the log {log_key.name}: {exc}")
        return
    report.checkpoint_time = checkpoint.time
    if checkpoint.tree_size != tree_size:
        problems.append(f"the signed checkpoint is for {checkpoint.tree_size} leaves, not {tree_size!r:.40}")
    elif (
        entry is not None
        and proof is not None
        and report.seq is not None
        and report.tree_size is not None
        and not verify_inclusion(
            leaf_hash(entry), report.seq - 1, report.tree_size, proof, checkpoint.root_hash
        )
    ):
        problems.append(
            f"the inclusion proof does not lead from event {report.seq} to the root the log signed"
        )

    try:
        cosigned = cosignatures_by(checkpoint, note, witness_keys)
    except CheckpointError as exc:
        problems.append(f"a witness cosignature is invalid: {exc}")
        return
    report.witnessed_by = [key.name for key in witness_keys if key.name in cosigned]
    if len(report.witnessed_by) < witnesses_required:
        problems.append(
            f"{len(report.witnessed_by)} of the trusted witnesses cosigned the checkpoint; "
            f"{witnesses_required} are required"
        )


def _inclusion_proof(value: object, problems: list[str]) -> list[bytes] | None:
    if not isinstance(value, list) or len(value) > MAX_INCLUSION_PROOF_LENGTH:
        problems.append(f"the inclusion proof must be a list of at most {MAX_INCLUSION_PROOF_LENGTH} hashes")
        return None
    hashes: list[bytes] = []
    for position, node in enumerate(value):
        what = f"inclusion proof hash {position + 1}"
        try:
            if not isinstance(node, str):
                raise CheckpointError(f"{what} is not text")
            decoded = _decode_canonical_base64(node, what)
        except CheckpointError as exc:
            problems.append(str(exc))
            return None
        if len(decoded) != HASH_SIZE:
            problems.append(f"{what} is not {HASH_SIZE} bytes")
            return None
        hashes.append(decoded)
    return hashes
