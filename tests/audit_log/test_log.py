"""The audit log on both databases: events with every action, append-only, tamper-evident."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log import service
from app.audit_log.checkpoint import open_signed_checkpoint
from app.audit_log.merkle import leaf_hash, verify_inclusion
from app.audit_log.models import AuditCheckpoint, AuditEvent
from app.audit_log.verification import VerifyReport, verify_database
from app.auth.models import Role
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from app.schema import upgrade_to_head
from tests.auth.factories import login
from tests.conftest import CHEAP_ARGON2, Backend, Organisation
from tests.intake.factories import make_tip

ORIGIN = "daylight.test/audit"
# What the organisation fixture records before a test begins: the intake key, members' key pairs.
SET_UP_ACTIONS = ("intake_key.created", "account.key_pair_set")
ACTOR = audit.Actor(id=None, username="tester", role="lead")


def fill(session: Session, count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        audit.record(
            session,
            ACTOR,
            "test.action",
            object_type="tip",
            object_id=f"object-{number}",
            details={"n": number},
        )


def verify(session: Session, server_secrets: ServerSecrets) -> VerifyReport:
    return verify_database(session.connection(), service.signing_key(server_secrets).public_key(), ORIGIN)


def checkpoint(session: Session, server_secrets: ServerSecrets) -> AuditCheckpoint | None:
    return service.write_checkpoint(session, service.signing_key(server_secrets), ORIGIN)


def drop_append_only_triggers(session: Session, backend: Backend) -> None:
    """What an attacker with the database owner's rights does first."""
    if backend.name == "sqlite":
        for table in ("audit_events", "audit_checkpoints"):
            for operation in ("update", "delete"):
                session.execute(text(f"DROP TRIGGER {table}_no_{operation}"))
    else:
        for table in ("audit_events", "audit_checkpoints"):
            session.execute(text(f"DROP TRIGGER {table}_append_only ON {table}"))


def test_sequence_numbers_run_without_gaps_and_checkpoints_sign_the_tree(
    db_session: Session, server_secrets: ServerSecrets
) -> None:
    fill(db_session, 13)
    first = checkpoint(db_session, server_secrets)
    assert first is not None
    assert first.tree_size == 13
    assert checkpoint(db_session, server_secrets) is None  # nothing new, nothing signed
    fill(db_session, 8, start=13)
    second = checkpoint(db_session, server_secrets)
    assert second is not None
    assert second.tree_size == 21
    assert [e.seq for e in db_session.scalars(select(AuditEvent).order_by(AuditEvent.seq))] == list(
        range(1, 22)
    )
    opened = open_signed_checkpoint(
        second.signed_note, service.signing_key(server_secrets).public_key(), origin=ORIGIN
    )
    assert opened.root_hash == second.root_hash
    report = verify(db_session, server_secrets)
    assert report.ok, report.problems
    assert report.size == 21
    assert report.root == second.root_hash
    assert report.checkpoints_checked == 2


def test_inclusion_proofs_from_the_node_table_verify(
    db_session: Session, server_secrets: ServerSecrets
) -> None:
    from app.audit_log.merkle import inclusion_proof

    fill(db_session, 37)
    signed = checkpoint(db_session, server_secrets)
    assert signed is not None
    for seq in (1, 2, 17, 36, 37):
        event = db_session.get_one(AuditEvent, seq)
        proof = inclusion_proof(service.DatabaseNodeStore(db_session), seq - 1, signed.tree_size)
        assert verify_inclusion(
            leaf_hash(audit.entry_of(event)), seq - 1, signed.tree_size, proof, signed.root_hash
        )


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET action = 'nothing.happened' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
        "UPDATE audit_checkpoints SET tree_size = 1",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_the_database_refuses_to_change_or_remove_audit_rows(
    db_session: Session, server_secrets: ServerSecrets, statement: str
) -> None:
    fill(db_session, 3)
    checkpoint(db_session, server_secrets)
    db_session.commit()
    with pytest.raises(DBAPIError, match="append-only"), db_session.begin_nested():
        db_session.execute(text(statement))


TAMPERING = {
    "edit": ("UPDATE audit_events SET action = 'tip.nothing' WHERE seq = 7", 7),
    "edit_details": ("UPDATE audit_events SET details = '{}' WHERE seq = 12", 12),
    "delete": ("DELETE FROM audit_events WHERE seq = 5", 5),
    "truncate": ("DELETE FROM audit_events WHERE seq > 15", 16),
    "reorder": (
        "UPDATE audit_events SET object_id = CASE seq WHEN 3 THEN 'object-3x' ELSE 'object-2' END "
        "WHERE seq IN (3, 4)",
        3,
    ),
    "edit_after_checkpoint_in_node_table_too": (
        "UPDATE audit_events SET outcome = 'failure' WHERE seq = 9",
        9,
    ),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampering_is_detected_and_the_first_bad_event_named(
    db_session: Session, backend: Backend, server_secrets: ServerSecrets, kind: str
) -> None:
    fill(db_session, 20)
    checkpoint(db_session, server_secrets)
    assert verify(db_session, server_secrets).ok
    drop_append_only_triggers(db_session, backend)
    statement, bad_seq = TAMPERING[kind]
    db_session.execute(text(statement))
    report = verify(db_session, server_secrets)
    assert not report.ok
    assert report.first_bad_seq == bad_seq, report.problems


def test_an_insertion_is_detected(
    db_session: Session, backend: Backend, server_secrets: ServerSecrets
) -> None:
    fill(db_session, 10)
    checkpoint(db_session, server_secrets)
    drop_append_only_triggers(db_session, backend)
    # Make room at seq 4 and slip an event in: every later event is renumbered.
    for seq in range(10, 3, -1):
        db_session.execute(
            text("UPDATE audit_events SET seq = :new WHERE seq = :old"), {"new": seq + 1, "old": seq}
        )
    audit_row = db_session.get_one(AuditEvent, 3)
    db_session.execute(
        AuditEvent.__table__.insert().values(
            seq=4,
            occurred_at=audit_row.occurred_at,
            actor_id=None,
            actor="intruder",
            role="lead",
            action="tip.read",
            object_type="tip",
            object_id="x",
            outcome="success",
            details="{}",
        )
    )
    report = verify(db_session, server_secrets)
    assert not report.ok
    assert report.first_bad_seq == 4


def test_a_forged_checkpoint_is_detected(
    db_session: Session, backend: Backend, server_secrets: ServerSecrets
) -> None:
    from app.audit_log.checkpoint import Checkpoint, sign_checkpoint, signing_key_from_seed

    fill(db_session, 6)
    signed = checkpoint(db_session, server_secrets)
    assert signed is not None
    drop_append_only_triggers(db_session, backend)
    forged = sign_checkpoint(
        Checkpoint(origin=ORIGIN, tree_size=6, root_hash=bytes(32), time=1),
        signing_key_from_seed(b"\x07" * 32),
    )
    db_session.execute(text("UPDATE audit_checkpoints SET signed_note = :note"), {"note": forged})
    report = verify(db_session, server_secrets)
    assert not report.ok
    assert "not validly signed" in report.problems[0]


def test_events_name_actions_never_content(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    canary = "CANARY-narrative-in-the-audit-log"
    tip_id, _ = make_tip(db_session, server_secrets, narrative=canary, host_city="CANARY-city")
    db_session.commit()
    member = organisation[Role.CASEWORKER]
    assert login(staff_client, member, password="wrong password").status_code == 401
    assert login(staff_client, member).status_code == 200
    assert staff_client.get(f"/api/v1/tips/{tip_id}").status_code == 200
    # The organisation's set-up comes first: its intake key and its members' key pairs.
    rows = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action.not_in(SET_UP_ACTIONS)).order_by(AuditEvent.seq)
    ).all()
    assert [(e.action, e.outcome) for e in rows] == [
        ("auth.login", "failure"),
        ("auth.login", "success"),
        ("tip.read", "success"),
    ]
    assert rows[2].object_id == str(tip_id)
    assert rows[2].actor == member.username
    everything = " ".join(str(audit.entry_of(e)) for e in rows)
    assert "CANARY" not in everything
    assert "wrong password" not in everything
    assert member.password not in everything


def test_an_unknown_username_is_not_recorded(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    typed = "maybe-my-password-typed-in-the-wrong-box"
    response = staff_client.post("/api/v1/auth/login", json={"username": typed, "password": "x", "otp": "1"})
    assert response.status_code == 401
    [event] = db_session.scalars(select(AuditEvent).where(AuditEvent.action.not_in(SET_UP_ACTIONS))).all()
    assert event.action == "auth.login"
    assert event.actor is None
    assert typed not in audit.entry_of(event).decode()


def test_the_auditor_api(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    fill(db_session, 5)
    db_session.commit()
    auditor = organisation[Role.AUDITOR]
    assert login(staff_client, auditor).status_code == 200
    items = staff_client.get("/api/v1/audit/events", params={"limit": 3}).json()["items"]
    # Newest first: the auditor's login, then the events filled above (after the set-up's five).
    assert [item["seq"] for item in items] == [11, 10, 9]
    by_object = staff_client.get("/api/v1/audit/events", params={"object_id": "object-2"}).json()["items"]
    assert [item["seq"] for item in by_object] == [8]
    by_actor = staff_client.get("/api/v1/audit/events", params={"actor": auditor.username}).json()["items"]
    assert [item["action"] for item in by_actor] == ["auth.login"]
    assert staff_client.get("/api/v1/audit/events", params={"limit": 1001}).status_code == 422
    assert staff_client.get("/api/v1/audit/checkpoint").status_code == 404
    signed = staff_client.post("/api/v1/audit/checkpoints")
    assert signed.status_code == 201
    assert signed.json()["signed_note"].startswith("daylight.local/audit\n")
    verified = staff_client.get("/api/v1/audit/verify").json()
    assert verified["ok"] is True
    assert verified["size"] >= 7
    assert len(bytes.fromhex(verified["root"])) == 32
    proof = staff_client.get("/api/v1/audit/events/2/proof").json()
    event = db_session.get_one(AuditEvent, 2)
    root = bytes.fromhex(staff_client.get("/api/v1/audit/checkpoint").json()["root"])
    assert verify_inclusion(
        leaf_hash(audit.entry_of(event)),
        1,
        proof["tree_size"],
        [base64.b64decode(node) for node in proof["proof"]],
        root,
    )
    export = staff_client.get("/api/v1/audit/export")
    assert export.status_code == 200
    assert export.text.count('"type": "event"') >= 7


def test_concurrent_appends_take_every_number_once_in_commit_order(
    data_dir: Path, committed_database_url: str | None
) -> None:
    """Appenders race for the same max(seq) + 1; some roll back. The committed log is
    still 1..n with no gap and no duplicate, and a checkpoint covers all of it."""
    settings = Settings(
        data_dir=data_dir,
        argon2=CHEAP_ARGON2,
        database_url=SecretStr(committed_database_url) if committed_database_url else None,
    )
    database = Database.from_settings(settings)
    upgrade_to_head(database.engine)
    workers, rounds = 6, 15
    barrier = threading.Barrier(workers)

    def append(worker: int) -> int:
        barrier.wait()
        committed = 0
        for round_number in range(rounds):
            session = database.session_factory()
            try:
                audit.record(session, ACTOR, "test.race", details={"worker": worker})
                audit.record(session, ACTOR, "test.race", details={"worker": worker, "second": True})
                if round_number % 3 == 2:
                    session.rollback()  # a failed action takes its events with it
                else:
                    session.commit()
                    committed += 2
            finally:
                session.close()
        return committed

    with ThreadPoolExecutor(workers) as pool:
        expected = sum(pool.map(append, range(workers)))
    with database.transaction() as session:
        seqs = session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert seqs == list(range(1, expected + 1))
        checkpoint = service.write_checkpoint(session, Ed25519PrivateKey.generate(), ORIGIN)
        assert checkpoint is not None
        assert checkpoint.tree_size == expected
    database.engine.dispose()
