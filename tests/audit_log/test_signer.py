"""No unsigned tail, and no signature over a rewritten log: the checkpoint signer and the verdict.

Each attack is what someone holding the database (and, where said, the server) does, on both
databases; each test fails if the promise breaks.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.audit_log import service
from app.audit_log.assessment import LogAssessment, assess_log
from app.audit_log.checkpoint import VerifierKey
from app.audit_log.models import AuditCheckpoint, AuditEvent
from app.audit_log.signer import CheckpointSigner, SignerRun, SigningRefused, coverage
from app.audit_log.witness import load_state
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from tests.audit_log.test_log import ORIGIN, drop_append_only_triggers, fill
from tests.conftest import Backend

ALLOWED = dt.timedelta(seconds=30)


@pytest.fixture
def signer(server_secrets: ServerSecrets, tmp_path: Path) -> CheckpointSigner:
    return CheckpointSigner(service.signing_key(server_secrets), ORIGIN, tmp_path / "signer-state.json")


def assess(session: Session, signer: CheckpointSigner, now: dt.datetime | None = None) -> LogAssessment:
    log_key = VerifierKey(ORIGIN, signer.signing_key.public_key())
    return assess_log(session, log_key, max_unsigned=ALLOWED, now=now)


def sign(database: Database, signer: CheckpointSigner) -> AuditCheckpoint | None:
    with database.transaction() as session:
        return signer.sign_pending(session)


def test_a_log_with_events_and_no_checkpoint_never_verifies(
    db_session: Session, signer: CheckpointSigner
) -> None:
    fill(db_session, 3)
    verdict = assess(db_session, signer)
    assert verdict.report.ok, "the events themselves are intact"
    assert not verdict.ok
    assert "no signed checkpoint covers any of the 3 events" in verdict.problems[0]


def test_an_unsigned_tail_passes_within_the_allowed_delay_and_fails_after_it(
    db_session: Session, database: Database, signer: CheckpointSigner
) -> None:
    fill(db_session, 2)
    db_session.commit()
    sign(database, signer)
    fill(db_session, 3, start=2)
    now = dt.datetime.now(dt.UTC)
    fresh = assess(db_session, signer, now=now)
    assert fresh.ok, fresh.all_problems
    assert fresh.coverage.unsigned == 3
    assert "3 events not yet covered" in fresh.summary()
    stale = assess(db_session, signer, now=now + ALLOWED + dt.timedelta(seconds=1))
    assert not stale.ok
    assert "3 events are not covered by a signed checkpoint; the oldest, event 3" in stale.problems[0]


def test_one_signature_covers_every_event_committed_since_the_last(
    db_session: Session, database: Database, signer: CheckpointSigner
) -> None:
    fill(db_session, 5)
    db_session.commit()
    assert sign(database, signer).tree_size == 5  # type: ignore[union-attr]
    assert sign(database, signer) is None, "nothing new: no signature"
    fill(db_session, 3, start=5)
    db_session.commit()
    assert sign(database, signer).tree_size == 8  # type: ignore[union-attr]
    assert db_session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 2
    remembered = load_state(signer.state_path)  # type: ignore[arg-type]
    assert remembered is not None
    assert remembered.tree_size == 8


@pytest.mark.parametrize(
    "attack",
    [
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 6",
        "DELETE FROM audit_events WHERE seq = 6",
    ],
)
def test_an_edit_or_deletion_of_the_newest_event_after_a_clean_stop_is_caught(
    db_session: Session, database: Database, signer: CheckpointSigner, backend: Backend, attack: str
) -> None:
    fill(db_session, 6)
    db_session.commit()
    sign(database, signer)  # what `serve` does at shutdown
    drop_append_only_triggers(db_session, backend)
    db_session.execute(text(attack))
    verdict = assess(db_session, signer)
    assert not verdict.ok
    assert verdict.report.first_bad_seq == 6


def rewrite(session: Session, backend: Backend, *statements: str) -> None:
    drop_append_only_triggers(session, backend)
    for statement in statements:
        session.execute(text(statement))
    session.commit()


@pytest.mark.parametrize(
    ("statements", "reason"),
    [
        # The re-signing attack of the issue: forget the signed tree, edit, wait for a signature.
        (
            (
                "DELETE FROM audit_checkpoints",
                "DELETE FROM audit_nodes",
                "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2",
            ),
            "checkpoints_deleted",
        ),
        # Roll back to an older signed checkpoint, then edit what came after it.
        (
            (
                "DELETE FROM audit_checkpoints WHERE tree_size = 7",
                "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 6",
            ),
            "log_rolled_back",
        ),
        # Keep the newest checkpoint but graft a forged range under it.
        (
            (
                "UPDATE audit_checkpoints SET compact_range = (SELECT compact_range FROM audit_checkpoints "
                "WHERE tree_size = 4) WHERE tree_size = 7",
            ),
            "compact_range_altered",
        ),
    ],
)
def test_the_signer_refuses_a_log_that_does_not_extend_what_it_signed(
    db_session: Session,
    database: Database,
    signer: CheckpointSigner,
    backend: Backend,
    statements: tuple[str, ...],
    reason: str,
) -> None:
    fill(db_session, 4)
    db_session.commit()
    sign(database, signer)
    fill(db_session, 3, start=4)
    db_session.commit()
    sign(database, signer)
    rewrite(db_session, backend, *statements)
    fill(db_session, 1, start=7)
    db_session.commit()
    with pytest.raises(SigningRefused) as refused:
        sign(database, signer)
    assert refused.value.reason == reason

    # In the background, a refusal is an alert an auditor sees, recorded once per reason.
    run = SignerRun(signer, database)
    assert run.sign_if_due() is None
    assert run.sign_if_due() is None
    alerts = db_session.scalars(
        select(AuditEvent.details).where(AuditEvent.action == "audit.checkpoint_refused")
    ).all()
    assert alerts == [f'{{"reason":"{reason}"}}']


def test_a_signer_whose_memory_is_behind_checks_the_newer_checkpoint_is_an_extension(
    db_session: Session, database: Database, server_secrets: ServerSecrets, tmp_path: Path
) -> None:
    """Two nodes, each with its own memory: one signs while the other is idle."""
    key = service.signing_key(server_secrets)
    node_a = CheckpointSigner(key, ORIGIN, tmp_path / "a.json")
    node_b = CheckpointSigner(key, ORIGIN, tmp_path / "b.json")
    fill(db_session, 3)
    db_session.commit()
    sign(database, node_b)
    fill(db_session, 10, start=3)
    db_session.commit()
    sign(database, node_a)
    fill(db_session, 2, start=13)
    db_session.commit()
    assert sign(database, node_b).tree_size == 15  # type: ignore[union-attr]


def test_the_signer_refuses_a_fork_its_memory_does_not_extend(
    db_session: Session, database: Database, signer: CheckpointSigner, backend: Backend
) -> None:
    """A rewritten log with a validly signed checkpoint (someone ran a memoryless signer)."""
    fill(db_session, 4)
    db_session.commit()
    sign(database, signer)
    rewrite(
        db_session,
        backend,
        "DELETE FROM audit_checkpoints",
        "DELETE FROM audit_nodes",
        "UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2",
    )
    fill(db_session, 2, start=4)
    db_session.commit()
    memoryless = CheckpointSigner(signer.signing_key, ORIGIN, None)
    assert sign(database, memoryless).tree_size == 6  # type: ignore[union-attr]
    fill(db_session, 1, start=6)
    db_session.commit()
    with pytest.raises(SigningRefused) as refused:
        sign(database, signer)
    assert refused.value.reason == "log_forked"


def test_coverage_names_the_oldest_unsigned_event(
    db_session: Session, database: Database, signer: CheckpointSigner
) -> None:
    fill(db_session, 2)
    db_session.commit()
    sign(database, signer)
    fill(db_session, 2, start=2)
    covered = coverage(db_session)
    oldest = db_session.scalar(select(AuditEvent.occurred_at).where(AuditEvent.seq == 3))
    assert (covered.events, covered.signed_size, covered.unsigned) == (4, 2, 2)
    assert covered.oldest_unsigned_at is not None
    assert oldest is not None
    assert covered.oldest_unsigned_at.replace(tzinfo=None) == oldest.replace(tzinfo=None)
