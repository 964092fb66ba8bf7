"""Cases linked to stations on both databases: two people per link, and only a confirmed link
counts on the station page and the map."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.kit.server_secrets import ServerSecrets
from app.stations.models import CaseStationLink
from tests.cases.factories import seeded_case
from tests.conftest import Client, Organisation


def test_a_confirmed_link_shows_on_the_station_page_and_the_map(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    proposed = caseworker.post(
        f"/api/v1/cases/{case_id}/stations",
        json={
            "station_id": str(dublin.id),
            "relation": "contacted_via",
            "confidence": "high",
            "evidence": "CANARY-EVIDENCE the caller named the Dublin office",
        },
    )
    assert proposed.status_code == 201
    link_id = proposed.json()["id"]
    assert b"CANARY" not in db_session.scalars(select(CaseStationLink)).one().evidence_encrypted
    # Proposed is not counted.
    assert 'data-linked-cases="0"' in caseworker.get(f"/stations/{dublin.id}").text
    assert caseworker.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm").status_code == 403
    assert lead.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm").status_code == 204
    page = caseworker.get(f"/stations/{dublin.id}").text
    assert 'data-linked-cases="1"' in page
    assert "contact by a service station: 1" in page
    assert "family pressured: 1" in page
    assert "Dublin, IE: 1" in caseworker.get("/stations/map").text
    detail = caseworker.get(f"/api/v1/cases/{case_id}").json()
    assert [(link["station"], link["confirmed"]) for link in detail["station_links"]] == [
        ("Dublin, IE", True)
    ]
    assert detail["station_links"][0]["evidence"].startswith("CANARY-EVIDENCE")
    again = caseworker.post(
        f"/api/v1/cases/{case_id}/stations",
        json={"station_id": str(dublin.id), "relation": "contacted_via", "confidence": "low"},
    )
    assert again.status_code == 409
    unknown = caseworker.post(
        f"/api/v1/cases/{case_id}/stations",
        json={"station_id": str(uuid.uuid4()), "relation": "suspected", "confidence": "low"},
    )
    assert unknown.status_code == 422


def test_a_lead_cannot_confirm_a_link_they_proposed(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    lead = signed_in(organisation[Role.LEAD])
    assert (
        lead.post(
            f"/api/v1/cases/{case_id}/members", json={"account_id": str(organisation[Role.LEAD].account.id)}
        ).status_code
        == 204
    )
    link_id = lead.post(
        f"/api/v1/cases/{case_id}/stations",
        json={"station_id": str(dublin.id), "relation": "operated_by", "confidence": "medium"},
    ).json()["id"]
    refused = lead.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm")
    assert refused.status_code == 409
    assert refused.json()["error"] == "two_person_rule"
