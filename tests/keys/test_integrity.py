"""A database writer without the server's secrets cannot substitute a public key to be sealed to."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.auth.models import Role, StaffAccount
from app.crypto import sealing
from app.crypto.integrity import UntrustedPublicKey
from app.custody.models import IntakeKey
from app.intake.models import MessageAuthor, Tip
from app.intake.service import add_message
from app.keys.grants import grant_intake_key
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import make_member
from tests.conftest import Organisation
from tests.intake.factories import make_tip


def attacker_key() -> bytes:
    return sealing.generate_private_key().public_key().raw


def test_a_swapped_intake_public_key_refuses_submissions(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    intake_key = db_session.get_one(IntakeKey, organisation.intake.key.version)
    intake_key.public_key = attacker_key()
    db_session.commit()
    response = intake_client.post("/api/v1/tips", json={"narrative": "to whom is this sealed?"})
    assert response.status_code == 503
    assert response.json()["error"] == "key_integrity"
    assert db_session.scalar(select(func.count()).select_from(Tip)) == 0


def test_a_copied_mac_does_not_vouch_for_another_key(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    """The MAC binds the row: a member's genuine key and MAC copied onto the intake key fail."""
    member = organisation[Role.ADMIN].account
    intake_key = db_session.get_one(IntakeKey, organisation.intake.key.version)
    intake_key.public_key, intake_key.public_key_mac = member.public_key, member.public_key_mac
    db_session.commit()
    assert intake_client.post("/api/v1/tips", json={"narrative": "x"}).status_code == 503


def test_a_swapped_member_public_key_refuses_a_grant(
    db_session: Session, organisation: Organisation, settings: Settings, server_secrets: ServerSecrets
) -> None:
    member = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.get_one(StaffAccount, member.account.id).public_key = attacker_key()
    with pytest.raises(UntrustedPublicKey):
        grant_intake_key(
            db_session,
            intake_key=organisation.intake.key,
            intake_private=organisation.intake.private,
            grantee=member.account,
            granted_by_id=None,
            key_integrity_key=server_secrets.key_integrity_key,
        )


def test_a_swapped_receipt_public_key_refuses_a_reply(
    db_session: Session, organisation: Organisation, server_secrets: ServerSecrets
) -> None:
    tip_id, _ = make_tip(db_session, server_secrets)
    tip = db_session.get_one(Tip, tip_id)
    tip.receipt_public_key = attacker_key()
    with pytest.raises(UntrustedPublicKey):
        add_message(
            db_session,
            tip,
            "a reply the attacker wants",
            author=MessageAuthor.STAFF,
            server_secrets=server_secrets,
        )


def test_genuine_keys_pass(
    db_session: Session, organisation: Organisation, server_secrets: ServerSecrets
) -> None:
    tip_id, _ = make_tip(db_session, server_secrets)
    message = add_message(
        db_session,
        db_session.get_one(Tip, tip_id),
        "hello",
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
    )
    assert message.body_for_submitter is not None
