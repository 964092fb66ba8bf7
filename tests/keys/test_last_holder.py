"""Revoking the last grant of the current intake key version asks for confirmation (issue 22):
without it, 409 `last_key_holder` and nothing changed; with it, the revocation goes ahead and
its audit event says so. A revocation that leaves another holder needs no confirmation."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role, StaffAccount
from app.custody.models import IntakeKeyGrant
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, make_member
from tests.conftest import Organisation

Client = Callable[[StaffMember], TestClient]


def last_holder_message(username: str) -> str:
    return (
        f"{username} is the last holder of intake key version 1: revoking it leaves only the recovery "
        "key. Confirm to go ahead."
    )


def holders(session: Session) -> set[uuid.UUID]:
    session.expire_all()
    return set(session.scalars(select(IntakeKeyGrant.account_id)))


def revocations(session: Session, account_id: uuid.UUID) -> list[dict[str, object]]:
    return [
        json.loads(event.details)
        for event in session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "key.revoke", AuditEvent.object_id == str(account_id))
            .order_by(AuditEvent.seq)
        )
    ]


def csrf_token(client: TestClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/keys").text)
    assert found
    return found.group(1)


def test_over_the_api_the_last_holder_is_revoked_only_when_confirmed(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    lead, caseworker = organisation[Role.LEAD], organisation[Role.CASEWORKER]
    client = signed_in(lead)
    # The lead still holds the key: revoking the caseworker needs no confirmation.
    assert client.delete(f"/api/v1/key-grants/{caseworker.account.id}").status_code == 204
    assert holders(db_session) == {lead.account.id}
    assert revocations(db_session, caseworker.account.id) == [{}]

    # The lead's own grant is the last one: refused, nothing changed.
    refused = client.delete(f"/api/v1/key-grants/{lead.account.id}")
    assert refused.status_code == 409
    assert refused.json() == {"error": "last_key_holder", "detail": last_holder_message(lead.username)}
    assert client.delete(f"/api/v1/key-grants/{lead.account.id}?confirm_last_holder=false").status_code == 409
    assert holders(db_session) == {lead.account.id}
    assert revocations(db_session, lead.account.id) == []
    assert client.get("/api/v1/auth/session").status_code == 200  # the lead's session goes on

    confirmed = client.delete(f"/api/v1/key-grants/{lead.account.id}?confirm_last_holder=true")
    assert confirmed.status_code == 204
    assert holders(db_session) == set()
    assert revocations(db_session, lead.account.id) == [{"key_version": 1, "last_holder": True}]


def test_on_the_page_the_refusal_offers_a_confirmation_form(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    lead, caseworker = organisation[Role.LEAD], organisation[Role.CASEWORKER]
    # A lead who does not hold the key may still revoke: the caseworker is the last holder.
    db_session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == lead.account.id))
    db_session.commit()
    client = signed_in(lead)
    token = csrf_token(client)

    refused = client.post(
        f"/keys/{caseworker.account.id}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert refused.status_code == 409
    assert last_holder_message(caseworker.username) in refused.text
    assert f'data-confirm-last-holder="{caseworker.username}"' in refused.text
    assert f'action="/keys/{caseworker.account.id}/revoke"' in refused.text
    assert 'name="confirm_last_holder" value="yes" required' in refused.text
    assert f"{caseworker.username} is the only member who holds the current intake key" in refused.text
    assert holders(db_session) == {caseworker.account.id}
    assert revocations(db_session, caseworker.account.id) == []

    # The box left unticked sends nothing: refused again.
    unticked = client.post(
        f"/keys/{caseworker.account.id}/revoke", data={"csrf_token": token}, follow_redirects=False
    )
    assert unticked.status_code == 409
    confirmed = client.post(
        f"/keys/{caseworker.account.id}/revoke",
        data={"csrf_token": token, "confirm_last_holder": "yes"},
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    assert holders(db_session) == set()
    assert revocations(db_session, caseworker.account.id) == [{"key_version": 1, "last_holder": True}]


def test_a_lead_revoking_their_own_last_grant_on_the_page_is_asked_too(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    lead, caseworker = organisation[Role.LEAD], organisation[Role.CASEWORKER]
    db_session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == caseworker.account.id))
    db_session.commit()
    client = signed_in(lead)
    refused = client.post(
        f"/keys/{lead.account.id}/revoke", data={"csrf_token": csrf_token(client)}, follow_redirects=False
    )
    assert refused.status_code == 409
    assert "You are the only member who holds the current intake key" in refused.text
    assert holders(db_session) == {lead.account.id}


def test_a_deactivated_members_grant_does_not_count_as_a_holder(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    lead, caseworker = organisation[Role.LEAD], organisation[Role.CASEWORKER]
    db_session.execute(
        update(StaffAccount).where(StaffAccount.id == caseworker.account.id).values(is_active=False)
    )
    db_session.commit()
    refused = signed_in(lead).delete(f"/api/v1/key-grants/{lead.account.id}")
    assert refused.status_code == 409
    assert holders(db_session) == {lead.account.id, caseworker.account.id}


def test_revoking_someone_who_holds_nothing_needs_no_confirmation(
    signed_in: Client,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    lead, caseworker = organisation[Role.LEAD], organisation[Role.CASEWORKER]
    db_session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == caseworker.account.id))
    newcomer = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    client = signed_in(lead)
    # The lead is the only holder; neither revocation touches their grant.
    assert client.delete(f"/api/v1/key-grants/{newcomer.account.id}").status_code == 204
    assert client.delete(f"/api/v1/key-grants/{caseworker.account.id}").status_code == 204
    assert holders(db_session) == {lead.account.id}
    assert revocations(db_session, newcomer.account.id) == [{}]
