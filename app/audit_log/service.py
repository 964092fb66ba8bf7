"""Checkpoints, verification, proofs and export of the audit log.

Trust runs one way: events are the data; the Merkle tree is recomputed from
them; signed checkpoints (Ed25519 key outside the database) commit to the
tree at a size; the node table only speeds up proofs and locates damage, and
is never trusted by the verifier.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import Checkpoint, CheckpointError, open_signed_checkpoint, sign_checkpoint
from app.audit_log.events import canonical_entry, format_time, leaf_hashes_of_rows, lock_for_checkpoint
from app.audit_log.merkle import CompactRange, consistency_proof, inclusion_proof, leaf_hash, node_hash
from app.audit_log.models import AuditCheckpoint, AuditEvent, AuditNode
from app.kit.server_secrets import ServerSecrets

EVENT_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.occurred_at,
    AuditEvent.actor_id,
    AuditEvent.actor,
    AuditEvent.role,
    AuditEvent.action,
    AuditEvent.object_type,
    AuditEvent.object_id,
    AuditEvent.outcome,
    AuditEvent.details,
)
STREAM_BATCH = 10_000


def signing_key(server_secrets: ServerSecrets) -> Ed25519PrivateKey:
    """The checkpoint signing key: 32 bytes from the secrets dir, never in the database."""
    return Ed25519PrivateKey.from_private_bytes(server_secrets.audit_signing_key)


class DatabaseNodeStore:
    """Perfect subtree hashes from `audit_nodes`, with the ones being added kept in memory."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._cache: dict[tuple[int, int], bytes] = {}
        self.added: list[dict[str, object]] = []

    def get(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            node = self._session.get(AuditNode, {"level": level, "index": index})
            if node is None:
                raise LookupError(f"no audit tree node at level {level}, index {index}")
            self._cache[key] = node.hash
        return self._cache[key]

    def add(self, level: int, index: int, value: bytes) -> None:
        self._cache[(level, index)] = value
        self.added.append({"level": level, "index": index, "hash": value})


def append_leaf(store: DatabaseNodeStore, compact: CompactRange, leaf: bytes) -> None:
    """Append a leaf, recording it and every perfect subtree it completes."""
    index = compact.size
    compact.append(leaf)
    store.add(0, index, leaf)
    level = 0
    while index % 2 == 1:
        parent = node_hash(store.get(level, index - 1), store.get(level, index))
        level, index = level + 1, index // 2
        store.add(level, index, parent)


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    newest_first = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc())
    return session.scalars(newest_first.limit(1)).first()


def latest_event_seq(session: Session) -> int:
    return session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0


def write_checkpoint(
    session: Session, signing_key: Ed25519PrivateKey, origin: str, now: dt.datetime | None = None
) -> AuditCheckpoint | None:
    """Sign a checkpoint over every event so far; None when there is nothing new.

    Only the events since the last checkpoint are hashed (its compact range
    carries the rest), so the cost follows the new events, not the log size.
    """
    lock_for_checkpoint(session)
    latest = latest_checkpoint(session)
    compact = CompactRange.from_bytes(latest.compact_range) if latest else CompactRange()
    store = DatabaseNodeStore(session)
    connection = session.connection()
    for batch in list(iter_raw_event_batches(connection, after_seq=compact.size)):
        for row, leaf in zip(batch, leaf_hashes_of_rows(batch), strict=True):
            if row[0] != compact.size + 1:
                raise ValueError(f"audit event {compact.size + 1} is missing; refusing to checkpoint")
            append_leaf(store, compact, leaf)
    if latest is not None and compact.size == latest.tree_size:
        return None
    if compact.size == 0:
        return None
    moment = now or dt.datetime.now(dt.UTC)
    root = compact.root()
    checkpoint = AuditCheckpoint(
        tree_size=compact.size,
        root_hash=root,
        created_at=moment,
        compact_range=compact.to_bytes(),
        signed_note=sign_checkpoint(
            Checkpoint(origin=origin, tree_size=compact.size, root_hash=root, time=int(moment.timestamp())),
            signing_key,
        ),
    )
    if store.added:
        # Straight to the driver: the ORM's bulk insert costs ten times more per row,
        # and a checkpoint over many events adds about two nodes per event.
        connection.exec_driver_sql(
            NODE_INSERT_SQL[connection.dialect.name == "sqlite"],
            [(node["level"], node["index"], node["hash"]) for node in store.added],
        )
    session.add(checkpoint)
    session.flush()
    return checkpoint


def checkpoint_due(session: Session, interval: dt.timedelta, now: dt.datetime | None = None) -> bool:
    """New events and no checkpoint for ``interval``: time to sign one."""
    latest = latest_checkpoint(session)
    if latest_event_seq(session) <= (latest.tree_size if latest else 0):
        return False
    if latest is None:
        return True
    created = latest.created_at if latest.created_at.tzinfo else latest.created_at.replace(tzinfo=dt.UTC)
    return (now or dt.datetime.now(dt.UTC)) - created >= interval


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


# The driver's own parameter style: "?" for sqlite3, "%s" for psycopg.
NODE_INSERT_SQL = {
    True: 'INSERT INTO audit_nodes (level, "index", hash) VALUES (?, ?, ?)',
    False: 'INSERT INTO audit_nodes (level, "index", hash) VALUES (%s, %s, %s)',
}
EVENT_SQL = (
    "SELECT seq, occurred_at, actor_id, actor, role, action, object_type, object_id, outcome, "
    "details FROM audit_events"
)


def iter_raw_event_batches(
    connection: Connection, after_seq: int = 0
) -> Generator[list[tuple[Any, ...]], None, None]:
    """Event rows as the driver returns them, in seq order, fetched in batches.

    Straight from the driver's cursor, inside the connection's transaction: no
    ORM objects and no type conversion (canonical_entry reads the stored forms),
    which is most of the cost of verifying a large log. PostgreSQL streams
    through a server-side cursor, so memory stays flat.
    """
    if not connection.in_transaction():
        connection.execute(select(1))  # begin, so the raw cursor reads inside it
    driver_connection: Any = connection.connection.driver_connection
    postgres = connection.dialect.name == "postgresql"
    cursor = (
        driver_connection.cursor(name=f"audit_{uuid.uuid4().hex}") if postgres else driver_connection.cursor()
    )
    try:
        cursor.execute(f"{EVENT_SQL} WHERE seq > {'%s' if postgres else '?'} ORDER BY seq", (after_seq,))
        while batch := cursor.fetchmany(STREAM_BATCH):
            yield batch
    finally:
        cursor.close()


def iter_raw_events(connection: Connection, after_seq: int = 0) -> Generator[tuple[Any, ...], None, None]:
    batches = iter_raw_event_batches(connection, after_seq)
    try:
        for batch in batches:
            yield from batch
    finally:
        batches.close()


def iter_database_entries(
    connection: Connection, *, with_stored_leaves: bool = False
) -> Generator[tuple[int, bytes, bytes | None], None, None]:
    """Every event's canonical entry (and, on request, its stored leaf hash), in seq order.

    The result is closed when the generator is: a verifier that stops early must
    not leave a PostgreSQL server-side cursor open.
    """
    if not with_stored_leaves:
        for row in iter_raw_events(connection):
            yield row[0], canonical_entry(*row), None
        return
    statement = (
        select(*EVENT_COLUMNS, AuditNode.hash)
        .outerjoin(AuditNode, (AuditNode.level == 0) & (AuditNode.index == AuditEvent.seq - 1))
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=STREAM_BATCH)
    )
    with connection.execute(statement) as rows:
        for row in rows:
            yield row[0], canonical_entry(*row[:10]), row[10]


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


def export_lines(session: Session, public_key_line: str) -> Iterator[str]:
    """JSON Lines: a header, every event with its entry and an inclusion proof to the latest
    checkpoint that covers it, every checkpoint, and a consistency proof between each
    consecutive pair."""
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
            }
        )


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()
