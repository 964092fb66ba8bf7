"""The triage lifecycle through the staff API, on both databases: who may do what, in which state."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role, StaffAccount
from app.auth.principal import Principal, UnlockedKeys
from app.crypto import sealing
from app.entrypoints.organisation import init_organisation
from app.intake.models import Tip, TipStatus
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from app.triage import reading, workflow
from app.triage.models import TipEvent, TipNote, TipTag
from tests.auth.factories import StaffMember, make_member
from tests.conftest import CHEAP_ARGON2, Client, Organisation
from tests.intake.factories import make_tip


@pytest.fixture
def second_caseworker(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, organisation: Organisation
) -> StaffMember:
    member = make_member(db_session, settings, server_secrets, Role.CASEWORKER, grant=organisation.intake)
    db_session.commit()
    return member


@pytest.fixture
def second_lead(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, organisation: Organisation
) -> StaffMember:
    member = make_member(db_session, settings, server_secrets, Role.LEAD, grant=organisation.intake)
    db_session.commit()
    return member


@pytest.fixture
def tip(
    db_session: Session, server_secrets: ServerSecrets, organisation: Organisation
) -> tuple[uuid.UUID, str]:
    tip_id, receipt = make_tip(
        db_session,
        server_secrets,
        tactics=["surveillance", "station_contact"],
        host_country="IE",
        host_city="Dublin",
    )
    db_session.commit()
    return tip_id, receipt


def status_of(db_session: Session, tip_id: uuid.UUID) -> TipStatus:
    db_session.expire_all()
    return db_session.get_one(Tip, tip_id).status


def test_claim_moves_a_new_tip_into_review_and_it_stays_with_its_claimer(
    signed_in: Client,
    organisation: Organisation,
    second_caseworker: StaffMember,
    tip: tuple[uuid.UUID, str],
    db_session: Session,
) -> None:
    tip_id, _ = tip
    caseworker = signed_in(organisation[Role.CASEWORKER])
    claimed = caseworker.post(f"/api/v1/tips/{tip_id}/claim")
    assert claimed.status_code == 200
    assert (claimed.json()["status"], claimed.json()["assignee"]) == (
        "in_review",
        organisation[Role.CASEWORKER].username,
    )
    other = signed_in(second_caseworker)
    refused = other.post(f"/api/v1/tips/{tip_id}/claim")
    assert refused.status_code == 409
    assert refused.json()["error"] == "assigned_elsewhere"
    # Nor may the other caseworker act on it in any way.
    for path, body in (
        ("messages", {"body": "hi"}),
        ("verification", None),
        ("reject", {"reason": "spam"}),
        ("release", None),
    ):
        response = (
            other.post(f"/api/v1/tips/{tip_id}/{path}", json=body)
            if body
            else other.post(f"/api/v1/tips/{tip_id}/{path}")
        )
        assert response.status_code == 409, path
    assert status_of(db_session, tip_id) is TipStatus.IN_REVIEW


def test_an_unclaimed_tip_must_be_claimed_before_a_caseworker_works_on_it(
    signed_in: Client, organisation: Organisation, tip: tuple[uuid.UUID, str]
) -> None:
    tip_id, _ = tip
    response = signed_in(organisation[Role.CASEWORKER]).post(f"/api/v1/tips/{tip_id}/verification")
    assert response.status_code == 409
    assert "Claim this report" in response.json()["detail"]


def test_a_lead_assigns_only_to_a_member_who_can_read_the_tip(
    signed_in: Client,
    organisation: Organisation,
    second_caseworker: StaffMember,
    tip: tuple[uuid.UUID, str],
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    tip_id, _ = tip
    lead = signed_in(organisation[Role.LEAD])
    no_key = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    for account_id in (organisation[Role.AUDITOR].account.id, no_key.account.id, uuid.uuid4()):
        refused = lead.post(f"/api/v1/tips/{tip_id}/assign", json={"assignee_id": str(account_id)})
        assert refused.status_code == 422
    assigned = lead.post(
        f"/api/v1/tips/{tip_id}/assign", json={"assignee_id": str(second_caseworker.account.id)}
    )
    assert assigned.status_code == 200
    assert assigned.json()["assignee"] == second_caseworker.username
    # A caseworker cannot assign at all.
    caseworker = signed_in(organisation[Role.CASEWORKER])
    to_self = {"assignee_id": str(organisation[Role.CASEWORKER].account.id)}
    assert caseworker.post(f"/api/v1/tips/{tip_id}/assign", json=to_self).status_code == 403


def test_verification_needs_a_second_person_who_is_a_lead(
    signed_in: Client,
    organisation: Organisation,
    second_lead: StaffMember,
    tip: tuple[uuid.UUID, str],
    db_session: Session,
) -> None:
    tip_id, _ = tip
    lead = signed_in(organisation[Role.LEAD])
    assert lead.post(f"/api/v1/tips/{tip_id}/claim").status_code == 200
    assert lead.post(f"/api/v1/tips/{tip_id}/verification/confirm").status_code == 409  # nothing proposed
    assert lead.post(f"/api/v1/tips/{tip_id}/verification").status_code == 200
    own = lead.post(f"/api/v1/tips/{tip_id}/verification/confirm")
    assert own.status_code == 409
    assert own.json()["error"] == "two_person_rule"
    assert status_of(db_session, tip_id) is TipStatus.IN_REVIEW
    confirmed = signed_in(second_lead).post(f"/api/v1/tips/{tip_id}/verification/confirm")
    assert confirmed.status_code == 200
    assert confirmed.json()["status"] == "verified"
    assert status_of(db_session, tip_id) is TipStatus.VERIFIED


def test_a_caseworker_proposes_and_cannot_confirm(
    signed_in: Client, organisation: Organisation, tip: tuple[uuid.UUID, str], db_session: Session
) -> None:
    tip_id, _ = tip
    caseworker = signed_in(organisation[Role.CASEWORKER])
    assert caseworker.post(f"/api/v1/tips/{tip_id}/claim").status_code == 200
    proposed = caseworker.post(f"/api/v1/tips/{tip_id}/verification")
    assert proposed.json()["verification_proposed"] is True
    assert caseworker.post(f"/api/v1/tips/{tip_id}/verification").status_code == 409  # already proposed
    assert caseworker.post(f"/api/v1/tips/{tip_id}/verification/confirm").status_code == 403
    lead = signed_in(organisation[Role.LEAD])
    assert lead.post(f"/api/v1/tips/{tip_id}/verification/confirm").status_code == 200
    assert status_of(db_session, tip_id) is TipStatus.VERIFIED
    # Verified is final: no question, no rejection, no new claim.
    for path, body in (
        ("messages", {"body": "more?", "question": True}),
        ("reject", {"reason": "spam"}),
        ("claim", None),
    ):
        response = (
            lead.post(f"/api/v1/tips/{tip_id}/{path}", json=body)
            if body
            else lead.post(f"/api/v1/tips/{tip_id}/{path}")
        )
        assert response.status_code == 409, path
        assert response.json()["error"] == "illegal_transition"


def test_a_question_waits_for_the_submitter_whose_answer_returns_the_tip_to_review(
    signed_in: Client,
    organisation: Organisation,
    tip: tuple[uuid.UUID, str],
    db_session: Session,
    intake_client: TestClient,
) -> None:
    tip_id, receipt = tip
    caseworker = signed_in(organisation[Role.CASEWORKER])
    caseworker.post(f"/api/v1/tips/{tip_id}/claim")
    caseworker.post(f"/api/v1/tips/{tip_id}/verification")
    asked = caseworker.post(
        f"/api/v1/tips/{tip_id}/messages", json={"body": "Which month was it?", "question": True}
    )
    assert asked.status_code == 201
    assert (asked.json()["status"], asked.json()["verification_proposed"]) == ("needs_info", False)
    # Only the receipt holder reads it.
    view = intake_client.post("/api/v1/followup", json={"receipt": receipt}).json()
    assert (view["status"], [m["body"] for m in view["messages"]]) == ("needs_info", ["Which month was it?"])
    assert (
        intake_client.post(
            "/api/v1/followup/messages", json={"receipt": receipt, "body": "In March."}
        ).status_code
        == 201
    )
    queue = caseworker.get("/api/v1/tips", params={"mine": "true"}).json()["items"]
    assert [(item["status"], item["submitter_activity"]) for item in queue] == [("in_review", True)]
    detail = caseworker.get(f"/api/v1/tips/{tip_id}").json()
    assert [m["body"] for m in detail["messages"]] == ["Which month was it?", "In March."]
    seen = caseworker.get("/api/v1/tips", params={"mine": "true"}).json()["items"]
    assert seen[0]["submitter_activity"] is False


def test_rejection_needs_a_reason_and_a_duplicate_names_its_original(
    signed_in: Client,
    organisation: Organisation,
    tip: tuple[uuid.UUID, str],
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    tip_id, _ = tip
    original_id, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    lead = signed_in(organisation[Role.LEAD])
    assert lead.post(f"/api/v1/tips/{tip_id}/reject", json={}).status_code == 422
    assert lead.post(f"/api/v1/tips/{tip_id}/reject", json={"reason": "boring"}).status_code == 422
    assert lead.post(f"/api/v1/tips/{tip_id}/reject", json={"reason": "duplicate"}).status_code == 422
    assert (
        lead.post(
            f"/api/v1/tips/{tip_id}/reject", json={"reason": "duplicate", "duplicate_of": str(tip_id)}
        ).status_code
        == 422
    )
    assert (
        lead.post(
            f"/api/v1/tips/{tip_id}/reject", json={"reason": "spam", "duplicate_of": str(original_id)}
        ).status_code
        == 422
    )
    assert status_of(db_session, tip_id) is TipStatus.NEW
    rejected = lead.post(
        f"/api/v1/tips/{tip_id}/reject", json={"reason": "duplicate", "duplicate_of": str(original_id)}
    )
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["rejection_reason"]) == ("rejected", "duplicate")
    assert lead.get(f"/api/v1/tips/{tip_id}").json()["duplicate_of"] == str(original_id)


def test_notes_are_sealed_staff_only_and_every_step_is_in_the_history_and_the_audit_log(
    signed_in: Client,
    organisation: Organisation,
    tip: tuple[uuid.UUID, str],
    db_session: Session,
    intake_client: TestClient,
) -> None:
    tip_id, receipt = tip
    caseworker = signed_in(organisation[Role.CASEWORKER])
    caseworker.post(f"/api/v1/tips/{tip_id}/claim")
    note = "CANARY-NOTE partner org confirmed the station address"
    assert caseworker.post(f"/api/v1/tips/{tip_id}/notes", json={"body": note}).status_code == 201
    assert caseworker.post(f"/api/v1/tips/{tip_id}/notes", json={"body": "  "}).status_code == 422
    stored = db_session.scalars(select(TipNote)).one()
    assert b"CANARY-NOTE" not in stored.body_encrypted
    assert "CANARY" not in intake_client.post("/api/v1/followup", json={"receipt": receipt}).text
    detail = caseworker.get(f"/api/v1/tips/{tip_id}").json()
    assert [n["body"] for n in detail["notes"]] == [note]
    assert [(h["action"], h["from_status"], h["to_status"], h["actor"]) for h in detail["history"]] == [
        ("claim", "new", "in_review", organisation[Role.CASEWORKER].username),
        ("note", None, None, organisation[Role.CASEWORKER].username),
    ]
    events = db_session.scalars(select(AuditEvent).where(AuditEvent.object_id == str(tip_id))).all()
    assert {"tip.claim", "tip.note", "tip.read"} <= {event.action for event in events}
    assert all("CANARY" not in event.details for event in events)
    assert len(db_session.scalars(select(TipEvent)).all()) == 2


def test_the_queue_filters_pages_by_keyset_and_counts_without_decrypting(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    ids = []
    for number in range(7):
        tip_id, _ = make_tip(
            db_session,
            server_secrets,
            urgent=number % 3 == 0,
            tactics=["surveillance"] if number % 2 else ["physical"],
            host_country="IE" if number < 4 else "NL",
        )
        ids.append(tip_id)
    db_session.commit()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = caseworker.get("/api/v1/tips", params=params).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(str(tip_id) for tip_id in ids)
    assert len(seen) == len(set(seen))
    everything = caseworker.get("/api/v1/tips").json()
    assert [item["urgent"] for item in everything["items"]] == sorted(
        (item["urgent"] for item in everything["items"]), reverse=True
    )
    assert everything["counts"]["new"] == 7
    assert caseworker.get("/api/v1/tips", params={"urgent": "true"}).json()["counts"]["new"] == 3
    assert caseworker.get("/api/v1/tips", params={"cursor": "not-a-cursor"}).status_code == 422
    assert caseworker.get("/api/v1/tips", params={"colour": "red"}).status_code == 422

    # Tactic and country filters match every report, opened or not: the key holder's queue
    # indexed them all before filtering (app.triage.indexing).
    surveillance = caseworker.get("/api/v1/tips", params={"tactic": "surveillance"}).json()["items"]
    assert len(surveillance) == 3
    irish = caseworker.get("/api/v1/tips", params={"country": "ie", "tactic": "physical"}).json()["items"]
    assert len(irish) == 2
    # The index holds no answer in clear.
    for row in db_session.scalars(select(TipTag)).all():
        assert b"surveillance" not in row.tag
        assert b"IE" not in row.tag

    caseworker.post(f"/api/v1/tips/{ids[0]}/claim")
    mine = caseworker.get("/api/v1/tips", params={"mine": "true"}).json()["items"]
    assert [item["id"] for item in mine] == [str(ids[0])]
    assert len(caseworker.get("/api/v1/tips", params={"unassigned": "true"}).json()["items"]) == 6
    in_review = caseworker.get("/api/v1/tips", params={"status": "in_review"}).json()
    assert [item["id"] for item in in_review["items"]] == [str(ids[0])]
    assert in_review["counts"] == {"new": 6, "in_review": 1, "needs_info": 0, "verified": 0, "rejected": 0}


def test_duplicates_are_suggested_by_place_and_tactic_never_merged(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    first, _ = make_tip(
        db_session, server_secrets, tactics=["surveillance"], host_city="Dublin", host_country="IE"
    )
    same, _ = make_tip(
        db_session,
        server_secrets,
        tactics=["surveillance", "physical"],
        host_city=" dublin ",
        host_country="IE",
    )
    other_city, _ = make_tip(db_session, server_secrets, tactics=["surveillance"], host_city="Cork")
    other_tactic, _ = make_tip(db_session, server_secrets, tactics=["physical"], host_city="Dublin")
    db_session.commit()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    for tip_id in (first, same, other_city, other_tactic):
        caseworker.get(f"/api/v1/tips/{tip_id}")
    suggested = caseworker.get(f"/api/v1/tips/{first}/duplicates").json()
    assert [candidate["id"] for candidate in suggested] == [str(same)]
    # As the member reads them: the tactic by its name, never its code.
    assert suggested[0]["shared"] == ["city: dublin", "tactic: watched or followed"]
    db_session.expire_all()
    assert db_session.get_one(Tip, same).status is TipStatus.NEW  # a suggestion changes nothing


def test_members_reading_and_working_one_tip_at_once_never_deadlock_or_double_index(
    data_dir: Path, committed_database_url: str | None
) -> None:
    """Reads take the tip's row lock before the audit append, as workflow steps do: under
    concurrency on PostgreSQL neither waits on the other in opposite orders."""
    settings = Settings(
        data_dir=data_dir,
        argon2=CHEAP_ARGON2,
        database_url=SecretStr(committed_database_url) if committed_database_url else None,
    )
    database = Database.from_settings(settings)
    organisation = init_organisation(settings, database)
    server_secrets = load_server_secrets(settings.secrets_dir)
    with database.transaction() as session:
        tip_id, _ = make_tip(session, server_secrets, tactics=["surveillance"], host_city="Dublin")
        accounts = [
            StaffAccount(username=f"member-{n}", role=Role.LEAD, created_on=dt.date.today()) for n in range(6)
        ]
        session.add_all(accounts)
        session.flush()
        principals = [
            Principal(
                account_id=account.id,
                username=account.username,
                role=Role.LEAD,
                session_id=uuid.uuid4(),
                keys=UnlockedKeys(
                    personal=sealing.generate_private_key(), intake={1: organisation.intake_private}
                ),
                reauthenticated_at=dt.datetime.now(dt.UTC),
                csrf_token="",
            )
            for account in accounts
        ]
    barrier = threading.Barrier(len(principals))

    def work(index: int) -> None:
        barrier.wait()
        with database.transaction() as session:
            if index % 2:
                reading.read_tip(
                    session, principals[index], tip_id, integrity_key=server_secrets.key_integrity_key
                )
            else:
                _, data_key = reading.open_tip(session, principals[index], tip_id)
                workflow.add_note(session, principals[index], tip_id, f"note {index}", data_key)

    with ThreadPoolExecutor(len(principals)) as pool:
        list(pool.map(work, range(len(principals))))
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(TipNote)) == 3
        assert (
            session.scalar(select(func.count()).select_from(TipTag)) == 3
        )  # language, tactic, city: once each
    database.engine.dispose()


def test_notes_are_for_the_member_working_on_the_tip(
    signed_in: Client, organisation: Organisation, second_caseworker: StaffMember, tip: tuple[uuid.UUID, str]
) -> None:
    tip_id, _ = tip
    assert signed_in(organisation[Role.CASEWORKER]).post(f"/api/v1/tips/{tip_id}/claim").status_code == 200
    refused = signed_in(second_caseworker).post(f"/api/v1/tips/{tip_id}/notes", json={"body": "mine too"})
    assert refused.status_code == 409
    assert (
        signed_in(organisation[Role.LEAD])
        .post(f"/api/v1/tips/{tip_id}/notes", json={"body": "a lead may"})
        .status_code
        == 201
    )
