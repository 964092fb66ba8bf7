"""Figures from cases on both databases: only confirmed links of cases the viewer may see count,
and small counts are withheld from anything that leaves the system."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.auth.models import Role
from app.kit.server_secrets import ServerSecrets
from tests.cases.factories import seeded_case
from tests.conftest import Client, Organisation


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
