"""Cases linked to stations on both databases: two people per link, counts only from confirmed links
of cases the viewer may see, and small counts withheld from anything that leaves the system."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role
from app.entrypoints.demo import SEED_FILE
from app.intake.models import Tip, TipStatus
from app.kit.server_secrets import ServerSecrets
from app.stations import registry
from app.stations.models import CaseStationLink, Station
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip


def seeded_case(
    signed_in: Client,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    *,
    restricted: bool = False,
) -> tuple[str, Station]:
    registry.apply(db_session, registry.parse(SEED_FILE.read_bytes(), "csv"), audit.SYSTEM)
    tip_id, _ = make_tip(db_session, server_secrets)
    db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    db_session.commit()
    dublin = db_session.scalars(select(Station).where(Station.city == "Dublin")).one()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    created = caseworker.post(
        "/api/v1/cases",
        json={
            "title": "Calls from Dublin",
            "tip_ids": [str(tip_id)],
            "tactics": ["station_contact", "family_pressure"],
            "host_country": "IE",
            "restricted": restricted,
        },
    )
    assert created.status_code == 201
    return created.json()["id"], dublin


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
    assert "station contact: 1" in page
    assert "family pressure: 1" in page
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


def test_small_counts_are_withheld_from_what_leaves_the_system(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets)
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    link_id = caseworker.post(
        f"/api/v1/cases/{case_id}/stations",
        json={"station_id": str(dublin.id), "relation": "contacted_via", "confidence": "high"},
    ).json()["id"]
    lead.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm")
    exported = caseworker.get("/statistics.csv")
    assert exported.status_code == 200
    assert exported.headers["content-disposition"].startswith("attachment")
    # A category below the threshold is absent altogether: "<3" would say a few cases exist there.
    assert "station_contact" not in exported.text
    assert "host_country,IE" not in exported.text
    # Every station is listed, so "<3" does not tell no case from one or two.
    assert '"Dublin, IE",<3' in exported.text
    assert '"Tokyo, JP",<3' in exported.text
    assert ",1\n" not in exported.text  # no count below the threshold leaves
    report = caseworker.get("/statistics", params={"print": "1"}).text
    assert "station contact" not in report
    assert "are left out" in report
    on_screen = caseworker.get("/statistics").text
    assert "station contact" in on_screen  # staff see real counts inside the system


def test_a_restricted_case_adds_nothing_to_a_non_members_figures(
    signed_in: Client, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets, restricted=True)
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    link_id = caseworker.post(
        f"/api/v1/cases/{case_id}/stations",
        json={"station_id": str(dublin.id), "relation": "suspected", "confidence": "low"},
    ).json()["id"]
    # The lead is not a member of the restricted case: it does not exist for them.
    assert lead.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm").status_code == 404
    assert 'data-linked-cases="0"' in lead.get(f"/stations/{dublin.id}").text
