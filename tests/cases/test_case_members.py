"""Case membership on both databases: members hold the key, a case keeps one, and only members (or
leads) change who they are."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, make_member
from tests.cases.conftest import create_case
from tests.conftest import Organisation


def test_only_a_holder_of_the_key_can_become_a_member(
    lead: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
    verified_tip: Callable[[], uuid.UUID],
) -> None:
    case_id = create_case(lead, [verified_tip()])["id"]
    no_key = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    for account_id in (no_key.account.id, organisation[Role.ADMIN].account.id, uuid.uuid4()):
        assert (
            lead.post(f"/api/v1/cases/{case_id}/members", json={"account_id": str(account_id)}).status_code
            == 422
        )


def test_a_case_keeps_at_least_one_member(
    lead: TestClient, organisation: Organisation, verified_tip: Callable[[], uuid.UUID]
) -> None:
    case_id = create_case(lead, [verified_tip()])["id"]
    assert (
        lead.delete(f"/api/v1/cases/{case_id}/members/{organisation[Role.LEAD].account.id}").status_code
        == 409
    )


# Only members (or leads) change membership: otherwise a caseworker could add themselves,
# restrict the case and remove everyone else, hiding the case and its reports.


@pytest.fixture
def case_id(caseworker: TestClient, verified_tip: Callable[[], uuid.UUID]) -> object:
    """A case of the caseworker's, who is its only member."""
    return create_case(caseworker, [verified_tip()])["id"]


def test_a_non_member_cannot_add_themselves_to_a_case(
    caseworker: TestClient,
    other: TestClient,
    outsider: StaffMember,
    organisation: Organisation,
    case_id: object,
) -> None:
    assert (
        other.post(
            f"/api/v1/cases/{case_id}/members", json={"account_id": str(outsider.account.id)}
        ).status_code
        == 403
    )
    assert caseworker.get(f"/api/v1/cases/{case_id}").json()["members"] == [
        organisation[Role.CASEWORKER].username
    ]


def test_a_non_member_cannot_remove_a_member(
    caseworker: TestClient, other: TestClient, organisation: Organisation, case_id: object
) -> None:
    assert (
        other.delete(
            f"/api/v1/cases/{case_id}/members/{organisation[Role.CASEWORKER].account.id}"
        ).status_code
        == 403
    )
    assert caseworker.get(f"/api/v1/cases/{case_id}").status_code == 200
