"""Cases on both databases: built from verified tips, sealed at rest, and restricted to their members."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.cases.models import Case, CaseNote
from app.intake.models import Tip, TipStatus
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, make_member
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip


def verified_tip(db_session: Session, server_secrets: ServerSecrets, **answers: object) -> uuid.UUID:
    tip_id, _ = make_tip(db_session, server_secrets, **answers)
    db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    db_session.commit()
    return tip_id


@pytest.fixture
def outsider(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, organisation: Organisation
) -> StaffMember:
    """A second caseworker holding the key, not a member of anything."""
    member = make_member(db_session, settings, server_secrets, Role.CASEWORKER, grant=organisation.intake)
    db_session.commit()
    return member


def create(client: TestClient, tip_ids: list[uuid.UUID], **fields: object) -> dict[str, object]:
    response = client.post(
        "/api/v1/cases",
        json={
            "title": "Visits from the Dublin station",
            "summary": "Three families pressured.",
            "tip_ids": [str(tip_id) for tip_id in tip_ids],
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_case_groups_verified_tips_and_seals_its_words(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    first = verified_tip(db_session, server_secrets)
    second = verified_tip(db_session, server_secrets)
    unverified, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    refused = caseworker.post("/api/v1/cases", json={"title": "x", "tip_ids": [str(unverified)]})
    assert refused.status_code == 422
    case = create(
        caseworker, [first, second], tactics=["station_contact", "family_pressure"], host_country="ie"
    )
    assert (case["status"], case["tip_count"], case["host_country"]) == ("open", 2, "IE")
    assert case["tactics"] == ["family_pressure", "station_contact"]
    assert case["members"] == [organisation[Role.CASEWORKER].username]
    stored = db_session.scalars(select(Case)).one()
    assert b"Dublin" not in stored.title_encrypted
    assert b"families" not in stored.summary_encrypted
    # A tip may belong to several cases.
    assert create(caseworker, [first])["tip_count"] == 1
    listed = caseworker.get("/api/v1/cases").json()
    assert [item["title"] for item in listed] == ["Visits from the Dublin station"] * 2
    # The admin and the auditor never see a case.
    for role in (Role.ADMIN, Role.AUDITOR):
        assert signed_in(organisation[role]).get(f"/api/v1/cases/{case['id']}").status_code == 403


def test_a_restricted_case_and_its_tips_exist_only_for_its_members(
    signed_in: Client,
    organisation: Organisation,
    outsider: StaffMember,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    secret_tip = verified_tip(db_session, server_secrets)
    open_tip = verified_tip(db_session, server_secrets)
    lead = signed_in(organisation[Role.LEAD])
    case = create(lead, [secret_tip], restricted=True)
    other = signed_in(outsider)
    assert other.get(f"/api/v1/cases/{case['id']}").status_code == 404
    assert other.get("/api/v1/cases").json() == []
    assert other.get(f"/api/v1/tips/{secret_tip}").status_code == 404
    queue_ids = {item["id"] for item in other.get("/api/v1/tips").json()["items"]}
    assert str(secret_tip) not in queue_ids
    assert str(open_tip) in queue_ids
    assert other.get("/api/v1/tips").json()["counts"]["verified"] == 1
    # Not even a lead who is not a member, nor anyone writing to it.
    assert other.post(f"/api/v1/cases/{case['id']}/notes", json={"body": "x"}).status_code == 404
    assert other.post(f"/api/v1/tips/{secret_tip}/notes", json={"body": "x"}).status_code == 404

    assert (
        lead.post(
            f"/api/v1/cases/{case['id']}/members", json={"account_id": str(outsider.account.id)}
        ).status_code
        == 204
    )
    assert other.get(f"/api/v1/cases/{case['id']}").status_code == 200
    assert other.get(f"/api/v1/tips/{secret_tip}").status_code == 200
    assert lead.delete(f"/api/v1/cases/{case['id']}/members/{outsider.account.id}").status_code == 204
    assert other.get(f"/api/v1/tips/{secret_tip}").status_code == 404

    # Lifting the restriction is for members only; then everyone with the key sees it.
    assert lead.post(f"/api/v1/cases/{case['id']}/restriction", json={"restricted": False}).status_code == 204
    assert other.get(f"/api/v1/cases/{case['id']}").status_code == 200
    assert other.post(f"/api/v1/cases/{case['id']}/restriction", json={"restricted": True}).status_code == 409


def test_case_status_moves_forward_and_closes_with_a_sealed_resolution(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    caseworker = signed_in(organisation[Role.CASEWORKER])
    case_id = create(caseworker, [verified_tip(db_session, server_secrets)])["id"]

    def move(status: str, note: str | None = None) -> int:
        body = {"status": status, **({"resolution_note": note} if note else {})}
        return caseworker.post(f"/api/v1/cases/{case_id}/status", json=body).status_code

    assert move("referred") == 409
    assert move("investigating") == 204
    assert move("open") == 409
    assert move("referred") == 204
    assert move("closed") == 422
    assert move("closed", "Referred to the Garda; the family is safe.") == 204
    assert move("investigating") == 409
    detail = caseworker.get(f"/api/v1/cases/{case_id}").json()
    assert (detail["status"], detail["resolution_note"]) == (
        "closed",
        "Referred to the Garda; the family is safe.",
    )
    assert [event["action"] for event in detail["timeline"]] == ["create", "status", "status", "status"]
    assert b"Garda" not in (db_session.scalars(select(Case)).one().resolution_encrypted or b"")


def test_members_hold_the_key_and_a_case_keeps_one(
    signed_in: Client,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    lead = signed_in(organisation[Role.LEAD])
    case_id = create(lead, [verified_tip(db_session, server_secrets)])["id"]
    no_key = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    for account_id in (no_key.account.id, organisation[Role.ADMIN].account.id, uuid.uuid4()):
        assert (
            lead.post(f"/api/v1/cases/{case_id}/members", json={"account_id": str(account_id)}).status_code
            == 422
        )
    assert (
        lead.delete(f"/api/v1/cases/{case_id}/members/{organisation[Role.LEAD].account.id}").status_code
        == 409
    )
    note = lead.post(f"/api/v1/cases/{case_id}/notes", json={"body": "CANARY-CASE-NOTE"})
    assert note.status_code == 201
    assert b"CANARY" not in db_session.scalars(select(CaseNote)).one().body_encrypted
    assert lead.get(f"/api/v1/cases/{case_id}").json()["notes"][0]["body"] == "CANARY-CASE-NOTE"
    assert lead.post(f"/api/v1/cases/{case_id}/tips", json={"tip_id": str(uuid.uuid4())}).status_code == 422


def test_an_outsider_cannot_take_over_a_case_and_hide_it(
    signed_in: Client,
    organisation: Organisation,
    outsider: StaffMember,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    """Only members (or leads) change membership: otherwise a caseworker could add themselves,
    restrict the case and remove everyone else, hiding the case and its reports."""
    creator = signed_in(organisation[Role.CASEWORKER])
    case_id = create(creator, [verified_tip(db_session, server_secrets)])["id"]
    other = signed_in(outsider)
    assert (
        other.post(
            f"/api/v1/cases/{case_id}/members", json={"account_id": str(outsider.account.id)}
        ).status_code
        == 403
    )
    assert (
        other.delete(
            f"/api/v1/cases/{case_id}/members/{organisation[Role.CASEWORKER].account.id}"
        ).status_code
        == 403
    )
    assert other.post(f"/api/v1/cases/{case_id}/restriction", json={"restricted": True}).status_code == 409
    assert creator.get(f"/api/v1/cases/{case_id}").status_code == 200


def test_a_report_in_a_restricted_case_is_not_counted_or_named_for_outsiders(
    signed_in: Client,
    organisation: Organisation,
    outsider: StaffMember,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    hidden, shown = verified_tip(db_session, server_secrets), verified_tip(db_session, server_secrets)
    lead = signed_in(organisation[Role.LEAD])
    create(lead, [hidden], restricted=True)
    open_case = create(lead, [shown])
    assert lead.post(f"/api/v1/cases/{open_case['id']}/tips", json={"tip_id": str(hidden)}).status_code == 204
    other = signed_in(outsider)
    [listed] = other.get("/api/v1/cases").json()
    assert listed["tip_count"] == 1
    detail = other.get(f"/api/v1/cases/{open_case['id']}").json()
    assert [tip["id"] for tip in detail["tips"]] == [str(shown)]
    assert all(event["detail"] is None or "T-" not in event["detail"] for event in detail["timeline"])
