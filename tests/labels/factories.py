"""Labels for tests: made through the API as a lead would, and principals for the services."""

from __future__ import annotations

import datetime as dt
import uuid

from fastapi.testclient import TestClient

from app.auth.models import Role
from app.auth.principal import Principal, UnlockedKeys
from app.crypto import sealing
from tests.auth.factories import StaffMember
from tests.custody.factories import IntakeKeyFixture


def create_label(lead: TestClient, name: str) -> uuid.UUID:
    """A label created through the API (which must answer 201); its id."""
    response = lead.post("/api/v1/labels", json={"name": name})
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


def principal_of(member: StaffMember, intake: IntakeKeyFixture | None) -> Principal:
    """The member as a login makes them, holding the intake key when ``intake`` is given."""
    return Principal(
        account_id=member.account.id,
        username=member.username,
        role=Role(member.account.role),
        session_id=uuid.uuid4(),
        keys=UnlockedKeys(
            personal=sealing.generate_private_key(),
            intake={intake.key.version: intake.private} if intake else {},
        ),
        reauthenticated_at=dt.datetime.now(dt.UTC),
        csrf_token="",
    )
