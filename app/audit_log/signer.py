"""The checkpoint signer: every committed event signed within seconds, and never a rewritten history.

Two holes this closes (SECURITY.md §4b):

- **The unsigned tail.** Events newer than the last checkpoint are protected by nothing: someone
  holding the database file can edit or delete them and verification cannot tell. The staff app
  signs new events within ``audit_checkpoint_delay_seconds`` (one signature per look, however many
  requests committed in between), and `daylight serve` signs at startup and clean shutdown; every
  CLI command that appends events signs before it exits (app.entrypoints.cli.common).
- **Re-signing a rewritten log.** The signer keeps the last checkpoint it signed in a state file
  outside the database (``Settings.audit_signer_state_path``). Before signing it proves that the
  newest stored checkpoint is signed by the log's key, that the stored compact range really is
  that tree, and that the tree is a consistent extension (RFC 9162 §2.1.4) of what it remembers.
  A database writer who deletes checkpoints and nodes, edits events and waits for the next
  signature gets a refusal and an alert, not a fresh signature over their version. Witnesses
  (app.audit_log.witness) remember the same thing on machines the server does not control.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.checkpoint import (
    CheckpointError,
    VerifierKey,
    open_signed_checkpoint,
    parse_verifier_key,
    verifier_key,
)
from app.audit_log.events import lock_for_checkpoint
from app.audit_log.merkle import CompactRange, consistency_proof, verify_consistency
from app.audit_log.models import AuditCheckpoint, AuditEvent
from app.audit_log.service import (
    DatabaseNodeStore,
    latest_checkpoint,
    latest_event_seq,
    signing_key,
    write_checkpoint,
)
from app.audit_log.witness import WitnessState, load_state, save_state
from app.kit.config import Settings
from app.kit.db import READ_ONLY_OPTION, Database, after_commit
from app.kit.server_secrets import ServerSecrets

logger = logging.getLogger("daylight.audit")


def log_verifier(settings: Settings, server_secrets: ServerSecrets) -> VerifierKey:
    """The log's public key: configured (the signer runs elsewhere) or derived from the signing key."""
    if settings.audit_verifier_key is not None:
        key = parse_verifier_key(settings.audit_verifier_key)
        if key.name != settings.audit_log_origin:
            origin = settings.audit_log_origin
            raise CheckpointError(
                f"the audit verifier key is named {key.name!r}, not the log origin {origin!r}"
            )
        return key
    return VerifierKey(settings.audit_log_origin, signing_key(server_secrets).public_key())


def local_signer(settings: Settings, server_secrets: ServerSecrets) -> CheckpointSigner | None:
    """The signer of this process, or None when the signing key is held elsewhere."""
    if "audit_signing_key" not in server_secrets.held:
        return None
    return CheckpointSigner(
        signing_key(server_secrets), settings.audit_log_origin, settings.audit_signer_state_path
    )


class SigningRefused(Exception):
    """The stored log is not a consistent extension of what this signer signed before."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # a short code for the audit event; the message is for people


@dataclass(frozen=True)
class Coverage:
    """How much of the log the newest signed checkpoint covers."""

    events: int
    signed_size: int
    # The first event no checkpoint covers, and when it happened: what `verify` holds against
    # the allowed delay.
    oldest_unsigned_at: dt.datetime | None

    @property
    def unsigned(self) -> int:
        return max(0, self.events - self.signed_size)


def coverage(session: Session) -> Coverage:
    latest = latest_checkpoint(session)
    signed_size = latest.tree_size if latest else 0
    events = latest_event_seq(session)
    oldest = None
    if events > signed_size:
        oldest = session.scalar(select(AuditEvent.occurred_at).where(AuditEvent.seq == signed_size + 1))
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
    return Coverage(events=events, signed_size=signed_size, oldest_unsigned_at=oldest)


@dataclass(frozen=True)
class CheckpointSigner:
    """Signs checkpoints for the log ``origin``; ``state_path`` is its memory (None: no memory,
    for tests of the bare mechanism and for a one-off signature over a fresh database)."""

    signing_key: Ed25519PrivateKey
    origin: str
    state_path: Path | None

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.signing_key.public_key(), self.origin)

    def sign_pending(self, session: Session, now: dt.datetime | None = None) -> AuditCheckpoint | None:
        """Sign a checkpoint over every event so far, in the caller's transaction; None when
        there is nothing new. Raises SigningRefused when the stored log does not extend what
        this signer signed before; its memory moves forward only once the transaction commits."""
        lock_for_checkpoint(session)
        latest = latest_checkpoint(session)
        remembered = load_state(self.state_path) if self.state_path is not None else None
        self._check_extends(session, latest, remembered)
        checkpoint = write_checkpoint(session, self.signing_key, self.origin, now)
        newest = checkpoint or latest
        if self.state_path is not None and newest is not None:
            state = WitnessState(
                log_origin=self.origin,
                log_verifier_key=self.verifier_key,
                tree_size=newest.tree_size,
                root_hash=newest.root_hash,
                signed_note=newest.signed_note,
            )
            if remembered is None or remembered.tree_size != state.tree_size:
                path = self.state_path
                # After the commit: a memory ahead of the database would refuse every later
                # signature; one behind it is caught up by the consistency check next time.
                after_commit(session, lambda: save_state(path, state))
        return checkpoint

    def _check_extends(
        self, session: Session, latest: AuditCheckpoint | None, remembered: WitnessState | None
    ) -> None:
        check_extends_memory(
            session, latest, remembered, VerifierKey(self.origin, self.signing_key.public_key())
        )


def check_extends_memory(
    session: Session, latest: AuditCheckpoint | None, remembered: WitnessState | None, log_key: VerifierKey
) -> None:
    """Raise SigningRefused unless the newest stored checkpoint is signed by ``log_key``, its
    compact range is that tree, and it extends the remembered checkpoint (when there is one).
    The signer runs it before each signature; `daylight audit verify` runs it too."""
    if latest is None:
        if remembered is not None and remembered.tree_size > 0:
            raise SigningRefused(
                "checkpoints_deleted",
                f"the database holds no checkpoint, but this signer signed one at size "
                f"{remembered.tree_size}: the log's checkpoints were deleted",
            )
        return
    try:
        opened = open_signed_checkpoint(latest.signed_note, log_key.public_key, origin=log_key.name)
    except CheckpointError as exc:
        raise SigningRefused(
            "checkpoint_not_ours", f"the newest stored checkpoint is not signed by this log's key: {exc}"
        ) from None
    if opened.tree_size != latest.tree_size or opened.root_hash != latest.root_hash:
        raise SigningRefused("checkpoint_row_altered", "the newest checkpoint row differs from its note")
    try:
        compact = CompactRange.from_bytes(latest.compact_range)
    except ValueError:
        compact = None
    if compact is None or compact.size != opened.tree_size or compact.root() != opened.root_hash:
        # The next tree is built on this range: a forged one would graft new events onto
        # a history the signed checkpoint never committed to.
        raise SigningRefused(
            "compact_range_altered", "the stored compact range is not the tree the checkpoint signed"
        )
    if remembered is None:
        return
    if remembered.log_verifier_key != verifier_key(log_key.public_key, log_key.name):
        raise SigningRefused("signer_key_changed", "the signer's memory is of another log key")
    if opened.tree_size < remembered.tree_size:
        raise SigningRefused(
            "log_rolled_back",
            f"the newest stored checkpoint is at size {opened.tree_size}, but this signer "
            f"signed size {remembered.tree_size}: the log was rolled back",
        )
    if opened.tree_size == remembered.tree_size:
        if opened.root_hash != remembered.root_hash:
            raise SigningRefused("log_forked", f"the checkpoint at size {opened.tree_size} was replaced")
        return
    try:
        proof = consistency_proof(DatabaseNodeStore(session), remembered.tree_size, opened.tree_size)
    except (LookupError, ValueError):
        proof = None
    if proof is None or not verify_consistency(
        remembered.tree_size, opened.tree_size, remembered.root_hash, opened.root_hash, proof
    ):
        raise SigningRefused(
            "log_forked",
            f"the stored log at size {opened.tree_size} is not an extension of the checkpoint "
            f"this signer signed at size {remembered.tree_size}",
        )


class SignerRun:
    """Signing in transactions of its own, as the background signer and the commands do it.

    A refusal is logged and recorded as an audit event (an alert for auditors), once per reason
    per process, not once a second for as long as the damage stays.
    """

    def __init__(self, signer: CheckpointSigner, database: Database) -> None:
        self.signer = signer
        self.database = database
        self._alerted: set[str] = set()
        self.last_refusal: SigningRefused | None = None

    def sign_if_due(self) -> AuditCheckpoint | None:
        """Sign when events are waiting (a cheap look first: the loop runs every second)."""
        # A read-only look: on SQLite a write transaction would queue for the write lock behind
        # every submission, and the signer fell seconds behind under load (`make bench`).
        with self.database.transaction() as session:
            session.connection(execution_options={READ_ONLY_OPTION: True})
            waiting = coverage(session).unsigned > 0
        if not waiting:
            return None
        return self.sign_now()

    def sign_now(self) -> AuditCheckpoint | None:
        try:
            with self.database.transaction() as session:
                checkpoint = self.signer.sign_pending(session)
        except SigningRefused as refusal:
            self.last_refusal = refusal
            self._alert(refusal)
            return None
        self.last_refusal = None
        return checkpoint

    def _alert(self, refusal: SigningRefused) -> None:
        logger.error("audit checkpoint refused: %s", refusal)
        if refusal.reason in self._alerted:
            return
        self._alerted.add(refusal.reason)
        with self.database.transaction() as session:
            audit.record(
                session,
                audit.SYSTEM,
                "audit.checkpoint_refused",
                outcome=audit.Outcome.FAILURE,
                details={"reason": refusal.reason},
            )
