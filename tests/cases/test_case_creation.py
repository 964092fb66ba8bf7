"""Opening a case on both databases: from verified tips only, its words sealed at rest, never
shown to the admin or the auditor."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.cases.models import Case
from app.kit.server_secrets import ServerSecrets
from tests.cases.conftest import CASE_TITLE, create_case
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip


@pytest.fixture
def tips(verified_tip: Callable[[], uuid.UUID]) -> tuple[uuid.UUID, uuid.UUID]:
    return verified_tip(), verified_tip()


@pytest.fixture
def case(caseworker: TestClient, tips: tuple[uuid.UUID, uuid.UUID]) -> dict[str, object]:
    """The caseworker's case of both tips, with tactics and a host country as a user types them."""
    return create_case(
        caseworker, list(tips), tactics=["station_contact", "family_pressure"], host_country="ie"
    )


def test_a_case_cannot_be_opened_from_an_unverified_tip(
    caseworker: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    unverified, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    refused = caseworker.post("/api/v1/cases", json={"title": "x", "tip_ids": [str(unverified)]})
    assert refused.status_code == 422
    assert caseworker.get("/api/v1/cases").json() == []


def test_a_new_case_is_open_counts_its_tips_and_upper_cases_its_country(case: dict[str, object]) -> None:
    assert (case["status"], case["tip_count"], case["host_country"]) == ("open", 2, "IE")


def test_a_cases_tactics_come_back_in_a_stable_order(case: dict[str, object]) -> None:
    assert case["tactics"] == ["family_pressure", "station_contact"]


def test_the_creator_is_the_cases_first_member(case: dict[str, object], organisation: Organisation) -> None:
    assert case["members"] == [organisation[Role.CASEWORKER].username]


def test_a_cases_title_and_summary_are_sealed_at_rest(case: dict[str, object], db_session: Session) -> None:
    stored = db_session.scalars(select(Case)).one()
    assert b"Dublin" not in stored.title_encrypted
    assert b"families" not in stored.summary_encrypted


def test_a_tip_may_belong_to_several_cases(
    caseworker: TestClient, tips: tuple[uuid.UUID, uuid.UUID], case: dict[str, object]
) -> None:
    first, _ = tips
    assert create_case(caseworker, [first])["tip_count"] == 1
    listed = caseworker.get("/api/v1/cases").json()
    assert [item["title"] for item in listed] == [CASE_TITLE] * 2


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR])
def test_the_admin_and_the_auditor_never_see_a_case(
    signed_in: Client, organisation: Organisation, case: dict[str, object], role: Role
) -> None:
    assert signed_in(organisation[role]).get(f"/api/v1/cases/{case['id']}").status_code == 403


def test_only_a_known_tip_can_be_added_to_a_case(
    lead: TestClient, verified_tip: Callable[[], uuid.UUID]
) -> None:
    case_id = create_case(lead, [verified_tip()])["id"]
    assert lead.post(f"/api/v1/cases/{case_id}/tips", json={"tip_id": str(uuid.uuid4())}).status_code == 422
