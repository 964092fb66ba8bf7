"""Someone who can write the database but not read `secrets/`: each attack, and what stops it.

A separate database host, a leaked database credential or an injection gives exactly this.
Each test writes the database directly, as such an attacker would, on SQLite and PostgreSQL,
and asserts the service refuses, hides the forged row, or raises an integrity alert for admins
and auditors. (The audit log's own attacks are in tests/audit_log/test_signer.py and
tests/e2e/test_audit_witness.py.)
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth import sessions
from app.auth.models import Role, StaffAccount, StaffSession
from app.auth.password_keys import password_matches, set_password_and_new_key_pair, unwrap_personal_key
from app.auth.sessions import encode_token
from app.crypto import envelope, sealing
from app.custody.models import INTAKE_KEY_GRANT, IntakeKey, IntakeKeyGrant
from app.custody.service import RolledBackIntakeKey, StaleMemberKey, create_intake_key, unlock_granted_keys
from app.intake import service as intake_service
from app.intake.models import (
    ATTACHMENT_DETAILS,
    FOLLOWUP_ATTACHMENT_KEY,
    MESSAGE_BODY,
    MESSAGE_DATA_KEY,
    MESSAGE_FOR_SUBMITTER,
    MessageAuthor,
    Tip,
    TipAttachment,
    TipMessage,
    attachment_row_id,
    message_row_id,
)
from app.keys.grants import grant_intake_key
from app.kit.clock import today
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, login, make_member
from tests.conftest import Organisation
from tests.intake.factories import make_tip

PHISHING = "Please call us on Signal at +00 000 000 to confirm your report."


def alerts(session: Session, record: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == "integrity.alert", AuditEvent.object_type == record)
        )
    )


def forged_staff_reply(session: Session, tip_id: uuid.UUID, organisation: Organisation) -> TipMessage:
    """Everything needed is in the database: the intake public key and the tip's receipt key."""
    tip = session.get_one(Tip, tip_id)
    message_id = uuid.uuid4()
    row_id = message_row_id(tip_id, message_id)
    data_key = envelope.new_data_key()
    intake_public = sealing.PublicKey(organisation.intake.key.public_key)
    message = TipMessage(
        id=message_id,
        tip_id=tip_id,
        position=99,
        author=MessageAuthor.STAFF,
        author_account_id=organisation[Role.LEAD].account.id,
        sent_on=today(),
        intake_key_version=1,
        content_key_version=1,
        sealed_data_key=MESSAGE_DATA_KEY.seal(intake_public, data_key, row_id=row_id, key_version=1),
        body_encrypted=MESSAGE_BODY.seal(data_key, PHISHING.encode(), row_id=row_id, key_version=1),
        body_for_submitter=MESSAGE_FOR_SUBMITTER.seal(
            sealing.PublicKey(tip.receipt_public_key), PHISHING.encode(), row_id=row_id
        ),
        row_mac=secrets.token_bytes(32),
    )
    session.add(message)
    session.commit()
    return message


def test_a_forged_staff_reply_is_never_shown_to_the_submitter_or_to_staff(
    intake_client: TestClient,
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    tip_id, receipt = make_tip(db_session, server_secrets)
    db_session.commit()
    tip = db_session.get_one(Tip, tip_id)
    intake_service.add_message(
        db_session, tip, "A real reply.", author=MessageAuthor.STAFF, server_secrets=server_secrets
    )
    db_session.commit()
    forged = forged_staff_reply(db_session, tip_id, organisation)

    shown = intake_client.post("/api/v1/followup", json={"receipt": receipt}).json()["messages"]
    assert [m["body"] for m in shown] == ["A real reply."]
    page = intake_client.post("/followup", data={"receipt": receipt}).text
    assert PHISHING not in page
    assert "A real reply." in page

    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    read = staff_client.get(f"/api/v1/tips/{tip_id}").json()
    assert [m["body"] for m in read["messages"]] == ["A real reply."]
    assert [event.object_id for event in alerts(db_session, "tip_message")] == [str(forged.id)]


def test_a_message_flipped_between_submitter_and_staff_or_reattributed_is_hidden(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, _ = make_tip(db_session, server_secrets)
    tip = db_session.get_one(Tip, tip_id)
    from_submitter = intake_service.add_message(
        db_session, tip, "From the submitter.", author=MessageAuthor.SUBMITTER, server_secrets=server_secrets
    )
    from_lead = intake_service.add_message(
        db_session,
        tip,
        "From the lead.",
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
        author_account_id=organisation[Role.LEAD].account.id,
    )
    db_session.commit()
    db_session.execute(
        update(TipMessage).where(TipMessage.id == from_submitter.id).values(author=MessageAuthor.STAFF)
    )
    db_session.execute(
        update(TipMessage)
        .where(TipMessage.id == from_lead.id)
        .values(author_account_id=organisation[Role.CASEWORKER].account.id)
    )
    db_session.commit()
    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["messages"] == []
    assert {event.object_id for event in alerts(db_session, "tip_message")} == {
        str(from_submitter.id),
        str(from_lead.id),
    }


def test_a_receipt_pointed_at_another_tip_opens_neither(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    first_id, first_receipt = make_tip(db_session, server_secrets)
    second_id, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    first_lookup = db_session.get_one(Tip, first_id).receipt_lookup_hash
    db_session.execute(
        update(Tip).where(Tip.id == first_id).values(receipt_lookup_hash=secrets.token_bytes(32))
    )
    db_session.execute(update(Tip).where(Tip.id == second_id).values(receipt_lookup_hash=first_lookup))
    db_session.commit()
    assert intake_client.post("/api/v1/followup", json={"receipt": first_receipt}).status_code == 401
    assert (
        intake_client.post(
            "/api/v1/followup/messages", json={"receipt": first_receipt, "body": "Hello"}
        ).status_code
        == 401
    )
    assert db_session.get(Tip, second_id) is not None


def test_a_rolled_back_public_key_never_receives_a_grant(
    organisation: Organisation, db_session: Session, settings: Settings, server_secrets: ServerSecrets
) -> None:
    member = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    account = member.account
    old = (account.public_key, account.public_key_mac)
    # An admin reset: a new key pair, the grants sealed to the old one gone.
    set_password_and_new_key_pair(
        account,
        "a new and quite long passphrase",
        settings=settings,
        server_secrets=server_secrets,
        session=db_session,
        actor=audit.SYSTEM,
    )
    db_session.commit()
    current = (account.public_key, account.public_key_mac)
    # The writer restores the old key with its old MAC, valid for the old epoch only.
    db_session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id)
        .values(public_key=old[0], public_key_mac=old[1])
    )
    db_session.commit()
    db_session.refresh(account)
    with pytest.raises(StaleMemberKey):
        grant_intake_key(
            db_session,
            intake_key=organisation.intake.key,
            intake_private=organisation.intake.private,
            grantee=account,
            granted_by_id=None,
            key_integrity_key=server_secrets.key_integrity_key,
        )
    assert (
        db_session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account.id)).all() == []
    )
    # The same check guards rotation, which grants the new version through grant_intake_key;
    # the member's current key pair still receives a grant once restored.
    db_session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id)
        .values(public_key=current[0], public_key_mac=current[1])
    )
    db_session.commit()
    db_session.refresh(account)
    grant_intake_key(
        db_session,
        intake_key=organisation.intake.key,
        intake_private=organisation.intake.private,
        grantee=account,
        granted_by_id=None,
        key_integrity_key=server_secrets.key_integrity_key,
    )
    db_session.commit()
    restored = db_session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account.id)).all()
    assert len(restored) == 1


def test_a_session_row_written_into_the_database_opens_nothing(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    admin = organisation[Role.ADMIN].account
    token = secrets.token_bytes(32)
    forged_id = uuid.uuid4()
    now = sessions.utc_now()
    db_session.add(
        StaffSession(
            id=forged_id,
            token_hash=sessions._token_lookup_hash(token),
            account_id=admin.id,
            created_at=now,
            last_seen_at=now,
            reauthenticated_at=now,
            unlocked_keys_encrypted=sessions.SESSION_KEYS.seal(
                sessions._token_session_key(token),
                sessions.UnlockedKeys(personal=sealing.generate_private_key()).to_bytes(),
                row_id=str(forged_id),
            ),
            row_mac=None,
        )
    )
    db_session.commit()
    staff_client.cookies.set("daylight_session", encode_token(token))
    staff_client.cookies.set("__Host-daylight_session", encode_token(token))
    assert staff_client.get("/api/v1/accounts").status_code == 401
    assert [event.object_id for event in alerts(db_session, "staff_session")] == [str(forged_id)]


def test_a_grant_that_does_not_hold_the_intake_key_is_dropped_at_login(
    organisation: Organisation, db_session: Session, settings: Settings, server_secrets: ServerSecrets
) -> None:
    """Anyone can seal to a member's public key: a "grant" of the writer's own key pair."""
    member = organisation[Role.CASEWORKER]
    account = member.account
    impostor = sealing.generate_private_key()
    db_session.execute(
        update(IntakeKeyGrant)
        .where(IntakeKeyGrant.account_id == account.id)
        .values(
            sealed_private_key=INTAKE_KEY_GRANT.seal(
                sealing.PublicKey(account.public_key),  # type: ignore[arg-type]
                impostor.raw,
                row_id=str(account.id),
                key_version=1,
            )
        )
    )
    db_session.commit()
    login_keys = password_matches(account, member.password)
    assert login_keys is not None
    personal = unwrap_personal_key(account, login_keys)
    unlocked = unlock_granted_keys(
        db_session, account.id, personal, key_integrity_key=server_secrets.key_integrity_key
    )
    assert unlocked == {}


def test_a_file_slipped_into_a_tip_is_neither_listed_nor_opened(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, _ = make_tip(db_session, server_secrets)
    attachment_id = uuid.uuid4()
    data_key = envelope.new_data_key()
    intake_public = sealing.PublicKey(organisation.intake.key.public_key)
    db_session.add(
        TipAttachment(
            id=attachment_id,
            tip_id=tip_id,
            added_on=today(),
            intake_key_version=1,
            content_key_version=1,
            sealed_data_key=FOLLOWUP_ATTACHMENT_KEY.seal(
                intake_public, data_key, row_id=attachment_row_id(tip_id, attachment_id), key_version=1
            ),
            details_encrypted=ATTACHMENT_DETAILS.seal(
                data_key,
                b'{"size": 10, "content_type": "application/pdf", "metadata": "removed"}',
                row_id=str(attachment_id),
                key_version=1,
            ),
            row_mac=None,
        )
    )
    db_session.commit()
    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["attachments"] == []
    assert staff_client.get(f"/api/v1/tips/{tip_id}/attachments/{attachment_id}").status_code == 404
    assert len(alerts(db_session, "tip_attachment")) == 2


def test_a_lead_compares_the_fingerprint_the_member_sees_before_a_grant(
    signed_in: Callable[[StaffMember], TestClient], organisation: Organisation, db_session: Session
) -> None:
    """The member's page shows the key their login unlocked; the lead's shows the stored one.
    A substituted public key shows up as two different fingerprints."""
    member = organisation[Role.CASEWORKER]
    pattern = re.compile(r"<code data-fingerprint>([0-9a-f ]{24})</code>")
    own = pattern.findall(signed_in(member).get("/account").text)
    keys_page = signed_in(organisation[Role.LEAD]).get("/keys").text
    assert len(own) == 1
    assert own[0] in pattern.findall(keys_page)
    db_session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == member.account.id)
        .values(public_key=sealing.generate_private_key().public_key().raw)
    )
    db_session.commit()
    assert own[0] not in pattern.findall(signed_in(organisation[Role.LEAD]).get("/keys").text)


def test_new_reports_are_never_sealed_to_a_rolled_back_intake_key(
    intake_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    """A rotation made version 2; the writer deletes it so that new tips are sealed to version 1
    (whose private half may be why it was rotated away)."""
    create_intake_key(db_session, key_integrity_key=server_secrets.key_integrity_key, version=2)
    db_session.commit()
    assert intake_client.post("/api/v1/tips", json={"narrative": "Sealed to version 2."}).status_code == 201
    db_session.execute(delete(Tip).where(Tip.intake_key_version == 2))
    db_session.execute(delete(IntakeKey).where(IntakeKey.version == 2))
    db_session.commit()
    refused = intake_client.post("/api/v1/tips", json={"narrative": "Must not be sealed to version 1."})
    assert refused.status_code == 503
    assert db_session.scalars(select(Tip).where(Tip.intake_key_version == 1)).all() == []
    with pytest.raises(RolledBackIntakeKey):
        intake_service.start_tip(db_session, server_secrets)


def test_a_revoked_grant_put_back_into_the_database_opens_nothing(
    signed_in: Callable[[StaffMember], TestClient],
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    member = organisation[Role.CASEWORKER]
    account_id = member.account.id
    old = db_session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account_id)).one()
    kept = {
        column: getattr(old, column)
        for column in ("id", "key_version", "sealed_private_key", "granted_on", "row_mac")
    }
    lead = signed_in(organisation[Role.LEAD])
    assert lead.delete(f"/api/v1/key-grants/{account_id}").status_code < 300
    db_session.expire_all()
    # The writer puts the revoked grant back, byte for byte, MAC included.
    db_session.add(IntakeKeyGrant(account_id=account_id, **kept))
    db_session.commit()

    def unlocked() -> dict[int, sealing.PrivateKey]:
        account = db_session.get_one(StaffAccount, account_id)
        login_keys = password_matches(account, member.password)
        assert login_keys is not None
        personal = unwrap_personal_key(account, login_keys)
        return unlock_granted_keys(
            db_session, account_id, personal, key_integrity_key=server_secrets.key_integrity_key
        )

    assert unlocked() == {}
    # A grant a lead makes after the revocation opens as it should.
    db_session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account_id))
    db_session.commit()
    assert lead.put(f"/api/v1/key-grants/{account_id}").status_code < 300
    db_session.expire_all()
    assert list(unlocked()) == [organisation.intake.key.version]
