"""A lead's confirmation of a member's key pair (app.auth.confirmation), for tests whose member
activates or resets through a one-time link and is then granted the intake key."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import StaffAccount
from app.auth.password_keys import key_fingerprint


def member_fingerprint(session: Session, account_id: uuid.UUID) -> str:
    """The fingerprint the member's own account page shows: that of their stored public key
    (read afresh from the database; a test that tampers with the key reads the page instead)."""
    public_key = session.scalar(select(StaffAccount.public_key).where(StaffAccount.id == account_id))
    assert public_key is not None, "the member has not activated yet"
    return key_fingerprint(public_key)


def confirm_as_lead(lead_client: TestClient, session: Session, account_id: uuid.UUID) -> None:
    """The lead (signed in on ``lead_client``) types the fingerprint the member reads out."""
    response = lead_client.post(
        f"/api/v1/accounts/{account_id}/confirm",
        json={"fingerprint": member_fingerprint(session, account_id)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["confirmed"] is True
