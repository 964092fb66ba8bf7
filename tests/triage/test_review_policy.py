"""Verification under the review policy, on both databases: the proposer never confirms, the
page offers the confirm button exactly to those the service accepts, and a verified report says
so (app.auth.review_policy, app.triage.workflow)."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role
from app.auth.review_policy import ReviewPolicy, SecondPerson, set_review_policy
from app.intake.models import Tip, TipStatus
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, make_member
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip

CONFIRM_BUTTON = 'data-action="confirm"'


@pytest.fixture
def tip_id(db_session: Session, server_secrets: ServerSecrets, organisation: Organisation) -> uuid.UUID:
    made, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    return made


@pytest.fixture
def key_holder_policy(db_session: Session) -> None:
    set_review_policy(db_session, ReviewPolicy(SecondPerson.KEY_HOLDER), actor=audit.SYSTEM)
    db_session.commit()


def status_of(db_session: Session, tip_id: uuid.UUID) -> TipStatus:
    db_session.expire_all()
    return db_session.get_one(Tip, tip_id).status


def proposed_by(client: TestClient, tip_id: uuid.UUID) -> None:
    assert client.post(f"/api/v1/tips/{tip_id}/claim").status_code == 200
    assert client.post(f"/api/v1/tips/{tip_id}/verification").status_code == 200


def status_text(page: str) -> str:
    match = re.search(r"<dd data-status=\"[a-z_]+\">(.*?)</dd>", page, re.S)
    assert match
    return match.group(1)


def confirm_by_form(client: TestClient, tip_id: uuid.UUID) -> int:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/tips/{tip_id}").text)
    assert match
    response = client.post(
        f"/tips/{tip_id}/confirm", data={"csrf_token": match.group(1)}, follow_redirects=False
    )
    return response.status_code


def test_the_lead_who_proposed_is_refused_and_offered_no_button(
    signed_in: Client, organisation: Organisation, tip_id: uuid.UUID, db_session: Session
) -> None:
    lead = signed_in(organisation[Role.LEAD])
    proposed_by(lead, tip_id)
    page = lead.get(f"/tips/{tip_id}").text
    assert CONFIRM_BUTTON not in page
    assert "Waiting for another lead to confirm" in page
    assert "awaiting another lead" in status_text(page)
    refused = lead.post(f"/api/v1/tips/{tip_id}/verification/confirm")
    assert (refused.status_code, refused.json()["error"]) == (409, "two_person_rule")
    assert status_of(db_session, tip_id) is TipStatus.IN_REVIEW


def test_under_the_lead_policy_a_caseworker_is_offered_no_button_and_refused(
    signed_in: Client, organisation: Organisation, tip_id: uuid.UUID, db_session: Session
) -> None:
    proposed_by(signed_in(organisation[Role.LEAD]), tip_id)
    caseworker = signed_in(organisation[Role.CASEWORKER])
    page = caseworker.get(f"/tips/{tip_id}").text
    assert CONFIRM_BUTTON not in page
    assert "Waiting for another lead to confirm" in page
    assert caseworker.post(f"/api/v1/tips/{tip_id}/verification/confirm").status_code == 403
    assert confirm_by_form(caseworker, tip_id) == 403
    assert status_of(db_session, tip_id) is TipStatus.IN_REVIEW


def test_another_lead_is_offered_the_button_and_confirms(
    signed_in: Client,
    organisation: Organisation,
    tip_id: uuid.UUID,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    second = make_member(db_session, settings, server_secrets, Role.LEAD, grant=organisation.intake)
    db_session.commit()
    proposed_by(signed_in(organisation[Role.LEAD]), tip_id)
    other = signed_in(second)
    assert CONFIRM_BUTTON in other.get(f"/tips/{tip_id}").text
    assert confirm_by_form(other, tip_id) == 303
    assert status_of(db_session, tip_id) is TipStatus.VERIFIED


@pytest.mark.usefixtures("key_holder_policy")
def test_under_the_key_holder_policy_a_caseworker_confirms_what_the_lead_proposed(
    signed_in: Client, organisation: Organisation, tip_id: uuid.UUID, db_session: Session
) -> None:
    lead = signed_in(organisation[Role.LEAD])
    proposed_by(lead, tip_id)
    lead_page = lead.get(f"/tips/{tip_id}").text
    assert CONFIRM_BUTTON not in lead_page
    assert "Waiting for another key holder to confirm" in lead_page
    caseworker = signed_in(organisation[Role.CASEWORKER])
    assert CONFIRM_BUTTON in caseworker.get(f"/tips/{tip_id}").text
    assert confirm_by_form(caseworker, tip_id) == 303
    assert status_of(db_session, tip_id) is TipStatus.VERIFIED


@pytest.mark.usefixtures("key_holder_policy")
def test_under_the_key_holder_policy_the_proposer_still_never_confirms(
    signed_in: Client, organisation: Organisation, tip_id: uuid.UUID, db_session: Session
) -> None:
    caseworker = signed_in(organisation[Role.CASEWORKER])
    proposed_by(caseworker, tip_id)
    assert CONFIRM_BUTTON not in caseworker.get(f"/tips/{tip_id}").text
    refused = caseworker.post(f"/api/v1/tips/{tip_id}/verification/confirm")
    assert (refused.status_code, refused.json()["error"]) == (409, "two_person_rule")
    assert status_of(db_session, tip_id) is TipStatus.IN_REVIEW
    confirmed = signed_in(organisation[Role.LEAD]).post(f"/api/v1/tips/{tip_id}/verification/confirm")
    assert (confirmed.status_code, confirmed.json()["status"]) == (200, "verified")


@pytest.mark.usefixtures("key_holder_policy")
def test_under_the_key_holder_policy_a_caseworker_without_the_key_is_refused(
    signed_in: Client,
    organisation: Organisation,
    tip_id: uuid.UUID,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    keyless: StaffMember = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    proposed_by(signed_in(organisation[Role.LEAD]), tip_id)
    # Without the key the report does not exist for them.
    assert signed_in(keyless).post(f"/api/v1/tips/{tip_id}/verification/confirm").status_code == 404
    assert status_of(db_session, tip_id) is TipStatus.IN_REVIEW


def test_a_verified_report_says_verified_and_never_awaiting(
    signed_in: Client, organisation: Organisation, tip_id: uuid.UUID, db_session: Session
) -> None:
    proposed_by(signed_in(organisation[Role.CASEWORKER]), tip_id)
    lead = signed_in(organisation[Role.LEAD])
    assert lead.post(f"/api/v1/tips/{tip_id}/verification/confirm").status_code == 200
    page = lead.get(f"/tips/{tip_id}").text
    text = status_text(page)
    assert text.startswith("verified")
    assert "confirmed" in text
    assert "awaiting" not in text
    assert "proposed" not in text
    assert "Waiting for another" not in page
    assert CONFIRM_BUTTON not in page
