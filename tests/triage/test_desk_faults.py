"""One damaged or planted row must not take the desk down: the queue, its search and the labels
page skip a report, label or saved view that does not open, and record it once."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.intake.models import Tip
from app.kit.server_secrets import ServerSecrets
from app.labels.models import Label
from app.triage.models import SavedView
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip
from tests.labels.factories import create_label


def flipped(ciphertext: bytes) -> bytes:
    return ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])


def alerts(db_session: Session) -> int:
    counted = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "integrity.alert")
    return int(db_session.scalar(counted) or 0)


def test_a_report_that_does_not_open_is_skipped_and_recorded_once(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    good, _ = make_tip(db_session, server_secrets, narrative="The station called my mother again.")
    damaged, _ = make_tip(db_session, server_secrets, narrative="Nobody will read this one.")
    tip = db_session.get_one(Tip, damaged)
    tip.answers_encrypted = flipped(tip.answers_encrypted)
    db_session.commit()
    lead: TestClient = signed_in(organisation[Role.LEAD])

    first = lead.get("/api/v1/tips", params={"summaries": "true"})
    assert first.status_code == 200
    summaries = {item["id"]: item["summary"] for item in first.json()["items"]}
    assert summaries[str(good)] is not None
    assert summaries[str(damaged)] is None
    assert first.json()["unindexed"] == 0  # the damaged one is not retried on every page
    assert alerts(db_session) == 1
    searched = lead.get("/api/v1/tips", params={"q": "station mother"})
    assert searched.status_code == 200
    assert [item["id"] for item in searched.json()["items"]] == [str(good)]
    assert lead.get("/tips").status_code == 200
    assert alerts(db_session) == 1
    # Opening the damaged report itself says what is wrong, as before.
    assert lead.get(f"/api/v1/tips/{damaged}").status_code >= 400


def test_a_label_or_saved_view_that_does_not_open_is_left_out(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    make_tip(db_session, server_secrets)
    db_session.commit()
    lead: TestClient = signed_in(organisation[Role.LEAD])
    create_label(lead, "Kept")
    damaged_id = create_label(lead, "Damaged")
    token = lead.get("/tips").text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    saved = lead.post("/views", data={"csrf_token": token, "name": "Urgent", "q_urgent": "true"})
    assert saved.status_code == 200
    label = db_session.get_one(Label, damaged_id)
    label.name_encrypted = flipped(label.name_encrypted)
    view = db_session.scalars(select(SavedView)).one()
    view.filters_encrypted = flipped(view.filters_encrypted)
    db_session.commit()

    queue = lead.get("/tips")
    assert queue.status_code == 200
    assert "Kept" in queue.text
    assert "Damaged" not in queue.text
    labels_page = lead.get("/labels")
    assert labels_page.status_code == 200
    assert "Kept" in labels_page.text
    assert [label["name"] for label in lead.get("/api/v1/labels").json()] == ["Kept"]
