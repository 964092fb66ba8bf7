"""A case's link to a station under the review policy, on both databases: the proposer never
confirms, and the case page offers "Confirm link" exactly to those the service accepts."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role
from app.auth.review_policy import ReviewPolicy, SecondPerson, set_review_policy
from app.kit.server_secrets import ServerSecrets
from app.stations.models import CaseStationLink, Station
from tests.cases.factories import seeded_case
from tests.conftest import Client, Organisation

CONFIRM_BUTTON = 'data-action="link_confirm"'


@pytest.fixture
def key_holder_policy(db_session: Session) -> None:
    set_review_policy(db_session, ReviewPolicy(SecondPerson.KEY_HOLDER), actor=audit.SYSTEM)
    db_session.commit()


def propose(client: TestClient, case_id: str, station: Station) -> str:
    proposed = client.post(
        f"/api/v1/cases/{case_id}/stations",
        json={"station_id": str(station.id), "relation": "operated_by", "confidence": "medium"},
    )
    assert proposed.status_code == 201, proposed.text
    link_id: str = proposed.json()["id"]
    return link_id


def confirmed(db_session: Session) -> bool:
    db_session.expire_all()
    return db_session.scalars(select(CaseStationLink)).one().confirmed_on is not None


def confirm_by_form(client: TestClient, case_id: str, link_id: str) -> int:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/cases/{case_id}").text)
    assert match
    response = client.post(
        f"/cases/{case_id}/link_confirm",
        data={"csrf_token": match.group(1), "link_id": link_id},
        follow_redirects=False,
    )
    return response.status_code


def test_the_lead_who_proposed_a_link_is_offered_no_button(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    lead = signed_in(organisation[Role.LEAD])
    link_id = propose(lead, case_id, dublin)
    page = lead.get(f"/cases/{case_id}").text
    assert CONFIRM_BUTTON not in page
    assert "Waiting for another lead to confirm" in page
    assert confirm_by_form(lead, case_id, link_id) == 409
    assert not confirmed(db_session)


def test_under_the_lead_policy_a_caseworker_is_offered_no_button_and_refused(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    link_id = propose(signed_in(organisation[Role.LEAD]), case_id, dublin)
    caseworker = signed_in(organisation[Role.CASEWORKER])
    assert CONFIRM_BUTTON not in caseworker.get(f"/cases/{case_id}").text
    assert caseworker.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm").status_code == 403
    assert not confirmed(db_session)


def test_the_lead_is_offered_the_button_for_a_caseworkers_link(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    link_id = propose(signed_in(organisation[Role.CASEWORKER]), case_id, dublin)
    lead = signed_in(organisation[Role.LEAD])
    assert CONFIRM_BUTTON in lead.get(f"/cases/{case_id}").text
    assert confirm_by_form(lead, case_id, link_id) == 303
    assert confirmed(db_session)
    page = lead.get(f"/cases/{case_id}").text
    assert CONFIRM_BUTTON not in page
    assert "Waiting for another" not in page


@pytest.mark.usefixtures("key_holder_policy")
def test_under_the_key_holder_policy_a_caseworker_confirms_the_leads_link(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    lead = signed_in(organisation[Role.LEAD])
    link_id = propose(lead, case_id, dublin)
    assert "Waiting for another key holder to confirm" in lead.get(f"/cases/{case_id}").text
    caseworker = signed_in(organisation[Role.CASEWORKER])
    assert CONFIRM_BUTTON in caseworker.get(f"/cases/{case_id}").text
    assert caseworker.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm").status_code == 204
    assert confirmed(db_session)


@pytest.mark.usefixtures("key_holder_policy")
def test_under_the_key_holder_policy_the_proposer_still_never_confirms(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    caseworker = signed_in(organisation[Role.CASEWORKER])
    link_id = propose(caseworker, case_id, dublin)
    assert CONFIRM_BUTTON not in caseworker.get(f"/cases/{case_id}").text
    refused = caseworker.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm")
    assert (refused.status_code, refused.json()["error"]) == (409, "two_person_rule")
    assert not confirmed(db_session)
