"""Verifying the audit log: every event against the signed checkpoints, naming the first bad one.

Trust runs one way: events are the data; the Merkle tree is recomputed from
them; signed checkpoints (Ed25519 key outside the database) commit to the
tree at a size; the node table only speeds up proofs and locates damage, and
is never trusted by the verifier.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, select

from app.audit_log.checkpoint import Checkpoint, CheckpointError, open_signed_checkpoint
from app.audit_log.event_stream import iter_database_entries, iter_raw_event_batches
from app.audit_log.events import leaf_hashes_of_rows
from app.audit_log.merkle import CompactRange, leaf_hash
from app.audit_log.models import AuditCheckpoint


@dataclass
class VerifyReport:
    ok: bool
    size: int
    root: bytes
    checkpoints_checked: int = 0
    problems: list[str] = field(default_factory=list)
    # Where damage was pinned exactly (a missing event, a truncation, an event
    # that differs from authenticated leaf hashes) ...
    exact_bad_seq: int | None = None
    # ... and the first event not proven good, when that is all that is known.
    bound_bad_seq: int | None = None

    def fail(self, problem: str, seq: int | None = None, *, exact: bool = True) -> None:
        self.ok = False
        self.problems.append(problem)
        if seq is None:
            return
        if exact:
            self.exact_bad_seq = seq if self.exact_bad_seq is None else min(seq, self.exact_bad_seq)
        else:
            self.bound_bad_seq = seq if self.bound_bad_seq is None else min(seq, self.bound_bad_seq)

    @property
    def first_bad_seq(self) -> int | None:
        """The first bad event: exact when pinned, else the first not proven good."""
        candidates = [seq for seq in (self.exact_bad_seq, self.bound_bad_seq) if seq is not None]
        return min(candidates) if candidates else None


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    tree_size: int
    signed_note: str


def verify_entries(
    entries: Iterable[tuple[int, bytes, bytes | None]],
    checkpoints: list[SignedCheckpoint],
    public_key: Ed25519PublicKey,
    origin: str,
) -> VerifyReport:
    """Verify a log given as (seq, canonical entry, stored leaf hash or None), in seq order.

    Detects edits (a checkpoint root no longer matches), deletions and
    insertions (sequence numbers must run 1, 2, 3 ...), reordering (the seq is
    inside each entry), truncation (a checkpoint larger than the log) and
    forged checkpoints (signature, origin, root).

    Naming the first bad event: events up to the last checkpoint that still
    verifies are proven good. Stored leaf hashes are *not* trusted, unless
    they reproduce a signed root themselves: then they are as good as signed,
    and the first event that differs from its stored hash is named exactly.
    Otherwise the report names the first event not proven good (a sound
    lower bound), and says so.
    """
    ordered = sorted(checkpoints, key=lambda c: c.tree_size)
    report = VerifyReport(ok=True, size=0, root=b"")
    compact = CompactRange()
    stored = CompactRange()  # the tree of the stored leaf hashes, while they are all present
    first_difference: int | None = None  # first seq whose stored leaf hash differs, since the last good size
    pending = iter(ordered)
    next_checkpoint = next(pending, None)
    last_good_size = 0
    for seq, entry, stored_leaf in entries:
        expected = compact.size + 1
        if seq != expected:
            report.fail(f"event {expected} is missing or out of order (found {seq} next)", expected)
            break
        leaf = leaf_hash(entry)
        compact.append(leaf)
        if stored_leaf is not None and stored.size == compact.size - 1:
            stored.append(stored_leaf)
            if stored_leaf != leaf and first_difference is None:
                first_difference = seq
        while next_checkpoint is not None and next_checkpoint.tree_size == compact.size:
            opened = _open_checkpoint(report, next_checkpoint, public_key, origin)
            if opened is not None and opened.root_hash == compact.root():
                if first_difference is not None:
                    # The events are intact; the node table (proofs) was altered.
                    report.fail(
                        f"the stored tree node of event {first_difference} was altered "
                        "(the events match the signed checkpoint; proofs served from the "
                        "node table would fail)",
                        first_difference,
                    )
                last_good_size, first_difference = compact.size, None
            elif opened is not None:
                exact = (
                    stored.size == compact.size
                    and stored.root() == opened.root_hash
                    and first_difference is not None
                )
                first_bad = first_difference if exact else last_good_size + 1
                report.fail(
                    f"event {first_bad} differs from what the checkpoint signed at size "
                    f"{opened.tree_size} commits to"
                    if exact
                    else f"events {last_good_size + 1} to {opened.tree_size} do not match the checkpoint "
                    f"signed at size {opened.tree_size}: the first bad event is at or after "
                    f"{last_good_size + 1}",
                    first_bad,
                    exact=exact,
                )
            next_checkpoint = next(pending, None)
    report.size = compact.size
    report.root = compact.root()
    for checkpoint in ([next_checkpoint] if next_checkpoint else []) + list(pending):
        report.checkpoints_checked += 1
        report.fail(
            f"the log has {compact.size} events but a checkpoint signed {checkpoint.tree_size}: "
            f"events from {compact.size + 1} were removed (truncation)",
            compact.size + 1,
        )
    return report


def _open_checkpoint(
    report: VerifyReport, checkpoint: SignedCheckpoint, public_key: Ed25519PublicKey, origin: str
) -> Checkpoint | None:
    """The signed checkpoint, or None (reported) when its signature, origin or size is wrong."""
    report.checkpoints_checked += 1
    try:
        opened = open_signed_checkpoint(checkpoint.signed_note, public_key, origin=origin)
    except CheckpointError as exc:
        report.fail(f"checkpoint at size {checkpoint.tree_size} is not validly signed: {exc}")
        return None
    if opened.tree_size != checkpoint.tree_size:
        report.fail(f"checkpoint stored at size {checkpoint.tree_size} signs size {opened.tree_size}")
        return None
    return opened


def database_checkpoints(connection: Connection) -> list[SignedCheckpoint]:
    return [
        SignedCheckpoint(size, note)
        for size, note in connection.execute(
            select(AuditCheckpoint.tree_size, AuditCheckpoint.signed_note).order_by(AuditCheckpoint.tree_size)
        )
    ]


def verify_database(connection: Connection, public_key: Ed25519PublicKey, origin: str) -> VerifyReport:
    """A fast pass that only confirms an intact log; when anything is off, the detailed
    pass (which also reads the stored leaf hashes) finds and names the first bad event."""
    checkpoints = database_checkpoints(connection)
    confirmed = _confirm_intact(connection, checkpoints, public_key, origin)
    if confirmed is not None:
        return confirmed
    return _verify_stream(
        iter_database_entries(connection, with_stored_leaves=True), checkpoints, public_key, origin
    )


def _confirm_intact(
    connection: Connection, checkpoints: list[SignedCheckpoint], public_key: Ed25519PublicKey, origin: str
) -> VerifyReport | None:
    """The report of an intact log, or None at the first sign of trouble.

    The hot loop of verification, kept free of per-row calls it does not need:
    rows arrive in driver batches and leaves join the tree in runs between
    checkpoint sizes.
    """
    signed: dict[int, bytes] = {}
    for checkpoint in checkpoints:
        try:
            opened = open_signed_checkpoint(checkpoint.signed_note, public_key, origin=origin)
        except CheckpointError:
            return None
        if opened.tree_size != checkpoint.tree_size:
            return None
        signed[opened.tree_size] = opened.root_hash
    compact = CompactRange()
    boundaries = sorted(signed)
    batches = iter_raw_event_batches(connection)
    try:
        for batch in batches:
            first = compact.size + 1
            # Sequence numbers are unique integers in order: first and last pin the whole batch.
            if batch[0][0] != first or batch[-1][0] != first + len(batch) - 1:
                return None
            leaves = leaf_hashes_of_rows(batch)
            before = first - 1  # the tree size before this batch
            while boundaries and boundaries[0] <= before + len(leaves):
                size = boundaries.pop(0)
                compact.extend(leaves[compact.size - before : size - before])
                if compact.root() != signed[size]:
                    return None
            compact.extend(leaves[compact.size - before :])
    finally:
        batches.close()
    if any(size > compact.size for size in signed):
        return None
    return VerifyReport(ok=True, size=compact.size, root=compact.root(), checkpoints_checked=len(signed))


def _verify_stream(
    entries: Generator[tuple[int, bytes, bytes | None], None, None],
    checkpoints: list[SignedCheckpoint],
    public_key: Ed25519PublicKey,
    origin: str,
) -> VerifyReport:
    try:
        return verify_entries(entries, checkpoints, public_key, origin)
    finally:
        entries.close()
