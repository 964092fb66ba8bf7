"""The staff pages of the workflow: forms with CSRF, refusals shown on the page, nothing half-done."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.intake.models import Tip, TipStatus
from app.kit.server_secrets import ServerSecrets
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip


def csrf(client: TestClient, page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text)
    assert match
    return match.group(1)


def test_a_refused_step_is_shown_on_the_tip_page_and_changes_nothing(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    token = csrf(caseworker, f"/tips/{tip_id}")
    refused = caseworker.post(f"/tips/{tip_id}/propose", data={"csrf_token": token})
    assert refused.status_code == 409
    assert "Claim this report before working on it." in refused.text
    assert "<script" not in refused.text
    # The refused step left no trace but the page's own reading.
    proposed = select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "tip.verify_propose")
    assert db_session.scalar(proposed) == 0
    assert caseworker.post(f"/tips/{tip_id}/claim", data={"csrf_token": "forged"}).status_code == 403
    assert caseworker.post(f"/tips/{tip_id}/launch", data={"csrf_token": token}).status_code == 404
    claimed = caseworker.post(f"/tips/{tip_id}/claim", data={"csrf_token": token}, follow_redirects=False)
    assert (claimed.status_code, claimed.headers["location"]) == (303, f"/tips/{tip_id}")
    db_session.expire_all()
    assert db_session.get_one(Tip, tip_id).status is TipStatus.IN_REVIEW


def test_the_queue_page_filters_and_pages(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    for _ in range(3):
        make_tip(db_session, server_secrets)
    db_session.commit()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    page = caseworker.get("/tips", params={"status": "new", "urgent": "", "tactic": "", "limit": "2"})
    assert page.status_code == 200
    assert page.text.count("data-ref=") == 2
    next_link = re.search(r'class="next-page" href="([^"]+)"', page.text)
    assert next_link is not None
    second = caseworker.get(next_link.group(1).replace("&amp;", "&"))
    assert second.text.count("data-ref=") == 1
    assert caseworker.get("/tips", params={"status": "sleeping"}).status_code == 422


def test_a_case_is_made_from_the_tip_page_by_form(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, _ = make_tip(db_session, server_secrets)
    db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    db_session.commit()
    lead = signed_in(organisation[Role.LEAD])
    form = lead.get(f"/cases/new?tip={tip_id}")
    assert f'value="{tip_id}" checked' in form.text
    token = csrf(lead, "/cases/new")
    refused = lead.post("/cases", data={"csrf_token": token, "title": "", "tip_ids": [str(tip_id)]})
    assert refused.status_code == 422
    created = lead.post(
        "/cases",
        data={"csrf_token": token, "title": "Sunday calls", "tip_ids": [str(tip_id)], "restricted": "yes"},
        follow_redirects=False,
    )
    assert created.status_code == 303
    case_path = created.headers["location"]
    assert "Sunday calls" in lead.get(case_path).text
    closed_early = lead.post(f"{case_path}/status", data={"csrf_token": token, "status": "closed"})
    assert closed_early.status_code == 422
    assert "resolution note" in closed_early.text
    assert (
        lead.post(
            f"{case_path}/status",
            data={"csrf_token": token, "status": "investigating"},
            follow_redirects=False,
        ).status_code
        == 303
    )
    assert signed_in(organisation[Role.CASEWORKER]).get(case_path).status_code == 404  # restricted
    assert lead.get(f"/cases/{uuid.uuid4()}").status_code == 404
