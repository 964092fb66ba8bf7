"""Shared set-up for the case tests: verified tips, a case opened through the API, signed-in staff."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.intake.models import Tip, TipStatus
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, make_member
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip

CASE_TITLE = "Visits from the Dublin station"


def create_case(client: TestClient, tip_ids: list[uuid.UUID], **fields: object) -> dict[str, object]:
    """Opens a case through the API (which must answer 201) and returns its JSON."""
    response = client.post(
        "/api/v1/cases",
        json={
            "title": CASE_TITLE,
            "summary": "Three families pressured.",
            "tip_ids": [str(tip_id) for tip_id in tip_ids],
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


@pytest.fixture
def verified_tip(db_session: Session, server_secrets: ServerSecrets) -> Callable[[], uuid.UUID]:
    """Makes a tip and marks it verified, the only kind a case may hold."""

    def make() -> uuid.UUID:
        tip_id, _ = make_tip(db_session, server_secrets)
        db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
        db_session.commit()
        return tip_id

    return make


@pytest.fixture
def outsider(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, organisation: Organisation
) -> StaffMember:
    """A second caseworker holding the key, not a member of anything."""
    member = make_member(db_session, settings, server_secrets, Role.CASEWORKER, grant=organisation.intake)
    db_session.commit()
    return member


@pytest.fixture
def caseworker(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.CASEWORKER])


@pytest.fixture
def lead(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.LEAD])


@pytest.fixture
def other(signed_in: Client, outsider: StaffMember) -> TestClient:
    """The outsider, signed in."""
    return signed_in(outsider)
