from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db import Base


class AuditEvent(Base):
    """One staff action. Append-only: triggers refuse UPDATE and DELETE, and the Merkle
    tree over the canonical encoding (app.audit_log.events) detects what gets past them.

    Never content, never submitter data, never an IP address. No foreign keys:
    the trail of an account or a tip outlives them.
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    actor: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    object_type: Mapped[str | None] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    # Canonical JSON of a small dict of non-sensitive details (counts, roles, reasons).
    details: Mapped[str] = mapped_column(Text)


class AuditCheckpoint(Base):
    """A signed commitment to the first ``tree_size`` events (C2SP tlog-checkpoint note)."""

    __tablename__ = "audit_checkpoints"

    tree_size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    signed_note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The perfect-subtree roots at this size, so the next checkpoint hashes only new events.
    compact_range: Mapped[bytes] = mapped_column(LargeBinary)


class AuditNode(Base):
    """A perfect subtree hash of the tree at checkpoints: level 0 are leaf hashes.

    Proofs are served from these in O(log² n) lookups; the verifier never trusts
    them, it recomputes everything from the events.
    """

    __tablename__ = "audit_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class AuditWitness(Base):
    """An outside party that remembers the checkpoints it saw and cosigns consistent ones.

    Registered by an admin. ``registration_mac`` (HMAC under the server's key-integrity key,
    which the database never holds) binds the name and verifier key to the row: someone who
    can write the database cannot add a witness of their own and so cannot make a checkpoint
    look witnessed with cosignatures they made themselves.
    """

    __tablename__ = "audit_witnesses"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # The C2SP verifier key, signature type 0x04 (app.audit_log.cosignature).
    verifier_key: Mapped[str] = mapped_column(Text)
    # SHA-256 of the witness's bearer token: 32 random bytes, so no slow hash is needed,
    # and a database copy does not yield a usable token.
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    registration_mac: Mapped[bytes] = mapped_column(LargeBinary)
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    registered_by: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class AuditCosignature(Base):
    """A witness's C2SP cosignature line over the checkpoint at ``tree_size``, checked on receipt
    and again by every verification (the row proves nothing by itself)."""

    __tablename__ = "audit_cosignatures"

    tree_size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    witness_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    signature_line: Mapped[str] = mapped_column(Text)
    # The witness's own timestamp inside the cosignature (Unix seconds).
    cosigned_at: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
