"""The foundation's promise: a submitted tip is read back only by a cleared caseworker or lead."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.intake.models import MessageAuthor, Tip
from app.intake.service import add_message
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import login, make_member
from tests.conftest import Organisation
from tests.intake.factories import make_tip


def test_caseworker_reads_a_tip_submitted_through_the_intake_api(
    intake_client: TestClient, staff_client: TestClient, organisation: Organisation
) -> None:
    submitted = intake_client.post(
        "/api/v1/tips",
        json={
            "narrative": "They called my mother.",
            "language": "en",
            "tactics": ["family_pressure"],
            "host_country": "NL",
            "host_city": "Rotterdam",
            "urgent": True,
        },
    )
    assert submitted.status_code == 201, submitted.text

    assert login(staff_client, organisation[Role.CASEWORKER]).status_code == 200
    queue = staff_client.get("/api/v1/tips").json()["items"]
    assert len(queue) == 1
    assert "narrative" not in queue[0]

    tip = staff_client.get(f"/api/v1/tips/{queue[0]['id']}").json()
    assert tip["narrative"] == "They called my mother."
    assert tip["host_city"] == "Rotterdam"
    assert tip["tactics"] == ["family_pressure"]
    assert tip["urgent"] is True


@pytest.fixture
def tip_id(db_session: Session, server_secrets: ServerSecrets, organisation: Organisation) -> uuid.UUID:
    tip, _ = make_tip(
        db_session,
        server_secrets,
        narrative="CANARY-NARRATIVE",
        host_city="CANARY-CITY",
        tactics=["surveillance"],
        host_country="IE",
    )
    db_session.commit()
    return tip


def test_the_queue_carries_no_content(
    staff_client: TestClient, organisation: Organisation, tip_id: uuid.UUID
) -> None:
    """DESIGN 8: the API's queue is metadata, for a key holder too, unless summaries are asked for."""
    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    response = staff_client.get("/api/v1/tips")
    assert response.status_code == 200
    assert "CANARY" not in response.text
    assert response.json()["items"][0]["id"] == str(tip_id)
    assert "CANARY" not in staff_client.get("/api/v1/tips", params={"tactic": "surveillance"}).text


def test_asked_for_summaries_a_key_holder_gets_them_and_a_keyless_member_not(
    staff_client: TestClient,
    organisation: Organisation,
    tip_id: uuid.UUID,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    """The staff page's summaries, decrypted for the response; neither is a read of the report."""
    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    response = staff_client.get("/api/v1/tips", params={"summaries": "true"})
    assert response.status_code == 200
    item = response.json()["items"][0]
    assert item["id"] == str(tip_id)
    assert item["summary"]["excerpt"] == "CANARY-NARRATIVE"
    assert item["summary"]["host_city"] == "CANARY-CITY"
    assert item["summary"]["tactics"] == ["surveillance"]
    actions = list(db_session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))
    assert "tips.list" in actions
    assert "tip.read" not in actions

    ungranted = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    assert login(staff_client, ungranted).status_code == 200
    keyless = staff_client.get("/api/v1/tips", params={"summaries": "true"})
    assert keyless.status_code == 200
    assert "CANARY" not in keyless.text
    assert keyless.json()["items"][0]["summary"] is None


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR])
def test_admin_and_auditor_never_read_tip_content(
    staff_client: TestClient, organisation: Organisation, tip_id: uuid.UUID, role: Role
) -> None:
    assert login(staff_client, organisation[role]).status_code == 200
    detail = staff_client.get(f"/api/v1/tips/{tip_id}")
    assert detail.status_code == 404
    assert "CANARY" not in detail.text
    assert staff_client.get("/api/v1/tips").status_code == 403


def test_a_caseworker_without_a_key_grant_gets_404(
    staff_client: TestClient,
    organisation: Organisation,
    tip_id: uuid.UUID,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    ungranted = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    response = login(staff_client, ungranted)
    assert response.json()["holds_intake_key"] is False
    assert staff_client.get(f"/api/v1/tips/{tip_id}").status_code == 404
    assert staff_client.get("/api/v1/tips").status_code == 200


def test_anonymous_gets_401(staff_client: TestClient, tip_id: uuid.UUID) -> None:
    assert staff_client.get(f"/api/v1/tips/{tip_id}").status_code == 401
    assert staff_client.get("/api/v1/tips").status_code == 401


def test_queue_orders_urgent_first(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    calm, _ = make_tip(db_session, server_secrets, urgent=False)
    urgent, _ = make_tip(db_session, server_secrets, urgent=True)
    db_session.commit()
    assert login(staff_client, organisation[Role.CASEWORKER]).status_code == 200
    ids = [item["id"] for item in staff_client.get("/api/v1/tips").json()["items"]]
    assert ids == [str(urgent), str(calm)]


def test_attachments_download_decrypted_and_only_through_their_tip(
    intake_client: TestClient, staff_client: TestClient, organisation: Organisation
) -> None:
    evidence = bytes(range(256)) * 1000
    assert (
        intake_client.post(
            "/api/v1/tips",
            data={"narrative": "file"},
            files=[("files", ("x.bin", evidence, "application/pdf"))],
        ).status_code
        == 201
    )
    other = intake_client.post("/api/v1/tips", json={"narrative": "other"})
    assert other.status_code == 201
    assert login(staff_client, organisation[Role.CASEWORKER]).status_code == 200
    items = staff_client.get("/api/v1/tips").json()["items"]
    with_file = next(i for i in items if i["attachment_count"] == 1)
    without = next(i for i in items if i["attachment_count"] == 0)
    [attachment] = staff_client.get(f"/api/v1/tips/{with_file['id']}").json()["attachments"]
    assert attachment["size"] == len(evidence)
    assert attachment["content_type"] == "application/pdf"
    download = staff_client.get(f"/api/v1/tips/{with_file['id']}/attachments/{attachment['id']}")
    assert download.status_code == 200
    assert download.content == evidence
    assert download.headers["content-type"] == "application/octet-stream"
    # The same attachment asked for through another tip does not exist.
    assert staff_client.get(f"/api/v1/tips/{without['id']}/attachments/{attachment['id']}").status_code == 404


def test_staff_see_both_sides_of_the_conversation(
    intake_client: TestClient,
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    add_message(
        db_session,
        db_session.get_one(Tip, tip_id),
        "Where?",
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
    )
    db_session.commit()
    assert (
        intake_client.post(
            "/api/v1/followup/messages", json={"receipt": receipt, "body": "In Dublin."}
        ).status_code
        == 201
    )
    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    messages = staff_client.get(f"/api/v1/tips/{tip_id}").json()["messages"]
    assert [(m["author"], m["body"]) for m in messages] == [("staff", "Where?"), ("submitter", "In Dublin.")]
