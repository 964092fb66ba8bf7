"""The audit log's Merkle tree as stored, and the signed checkpoints over it.

Checkpoints are computed from the events and signed with an Ed25519 key kept outside the
database; the node table written alongside only speeds up proofs and locates damage, and the
verifier never trusts it (app.audit_log.verification says which way trust runs).
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import Checkpoint, sign_checkpoint
from app.audit_log.event_stream import iter_raw_event_batches
from app.audit_log.events import leaf_hashes_of_rows, lock_for_checkpoint
from app.audit_log.merkle import CompactRange, node_hash
from app.audit_log.models import AuditCheckpoint, AuditEvent, AuditNode
from app.kit.server_secrets import ServerSecrets

# The driver's own parameter style: "?" for sqlite3, "%s" for psycopg.
NODE_INSERT_SQL = {
    True: 'INSERT INTO audit_nodes (level, "index", hash) VALUES (?, ?, ?)',
    False: 'INSERT INTO audit_nodes (level, "index", hash) VALUES (%s, %s, %s)',
}


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
