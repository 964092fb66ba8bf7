"""The notice pages: a member's own choice and the organisation's channels; bad input is a 422
page that keeps nothing, and the audit log records the choice without the address."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.kit.server_secrets import ServerSecrets
from app.notify import preferences
from app.notify.models import NotificationPreference, NotificationSettings
from tests.auth.factories import StaffMember
from tests.conftest import Organisation
from tests.notify.conftest import OpenPgpMemberKey


def csrf(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


def save_mine(client: TestClient, **fields: str) -> object:
    return client.post(
        "/account/notifications",
        data={"csrf_token": csrf(client, "/account/notifications"), "mode": "immediate", **fields},
        follow_redirects=False,
    )


@pytest.mark.usefixtures("organisation")
def test_a_member_saves_their_address_and_the_log_keeps_no_address(
    signed_in: Callable[[StaffMember], TestClient],
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    openpgp_member_key: OpenPgpMemberKey,
) -> None:
    client = signed_in(organisation[Role.CASEWORKER])
    saved = save_mine(
        client, enabled="on", address="me@staff.example", openpgp_key=openpgp_member_key.public_armored
    )
    assert saved.status_code == 303  # type: ignore[attr-defined]
    page = client.get("/account/notifications").text
    assert 'data-preference="enabled">on<' in page
    assert 'value="me@staff.example"' in page
    mine = preferences.member_preferences(
        db_session, organisation[Role.CASEWORKER].account.id, server_secrets.key_integrity_key
    )
    assert (mine.enabled, mine.address) == (True, "me@staff.example")
    assert mine.openpgp_fingerprint
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "notify.preferences")).one()
    assert "me@staff.example" not in event.details
    assert json.loads(event.details)["address"] is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"address": "not an address"}, "Give one e-mail address"),
        ({"address": "a@b.example, c@d.example"}, "Give one e-mail address"),
        ({"address": "me@staff.example", "openpgp_key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnope"}, ""),
        ({"address": "me@staff.example", "mode": "hourly"}, "Choose immediate or digest."),
    ],
)
def test_bad_preferences_are_refused_and_nothing_is_kept(
    signed_in: Callable[[StaffMember], TestClient],
    organisation: Organisation,
    db_session: Session,
    fields: dict[str, str],
    message: str,
) -> None:
    client = signed_in(organisation[Role.CASEWORKER])
    refused = save_mine(client, enabled="on", **fields)
    assert refused.status_code == 422  # type: ignore[attr-defined]
    assert message in refused.text  # type: ignore[attr-defined]
    assert db_session.get(NotificationPreference, organisation[Role.CASEWORKER].account.id) is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"webhook_url": "http://bridge.example/hook", "digest_hours": "24"}, "webhook"),
        ({"webhook_url": "https://user:pw@bridge.example/hook", "digest_hours": "24"}, "webhook"),
        ({"webhook_url": "", "digest_hours": "5"}, "digest"),
        ({"webhook_url": "", "digest_hours": "x"}, "digest"),
    ],
)
def test_bad_channels_are_refused_and_nothing_is_kept(
    signed_in: Callable[[StaffMember], TestClient],
    organisation: Organisation,
    db_session: Session,
    fields: dict[str, str],
    field: str,
) -> None:
    client = signed_in(organisation[Role.ADMIN])
    refused = client.post(
        "/admin/notifications", data={"csrf_token": csrf(client, "/admin/notifications"), **fields}
    )
    assert refused.status_code == 422
    assert 'role="alert"' in refused.text
    assert db_session.get(NotificationSettings, 1) is None


def test_the_admin_sets_a_webhook_and_sees_its_signing_key(
    signed_in: Callable[[StaffMember], TestClient],
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    client = signed_in(organisation[Role.ADMIN])
    saved = client.post(
        "/admin/notifications",
        data={
            "csrf_token": csrf(client, "/admin/notifications"),
            "email_enabled": "on",
            "webhook_url": "https://bridge.example/daylight",
            "digest_hours": "12",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    page = client.get("/admin/notifications").text
    channels = preferences.organisation_channels(db_session, server_secrets.key_integrity_key)
    assert channels.webhook_signing_key is not None
    assert channels.webhook_signing_key.hex() in page
    assert (channels.webhook_url, channels.digest_hours) == ("https://bridge.example/daylight", 12)
    row = db_session.get_one(NotificationSettings, 1)
    assert row.webhook_url_encrypted is not None
    assert b"bridge.example" not in row.webhook_url_encrypted
    # The key stays until the admin asks for a new one.
    client.post(
        "/admin/notifications",
        data={
            "csrf_token": csrf(client, "/admin/notifications"),
            "webhook_url": "https://bridge.example/daylight",
            "digest_hours": "12",
        },
    )
    db_session.expire_all()
    assert preferences.organisation_channels(
        db_session, server_secrets.key_integrity_key
    ).webhook_signing_key == (channels.webhook_signing_key)
    client.post(
        "/admin/notifications",
        data={
            "csrf_token": csrf(client, "/admin/notifications"),
            "webhook_url": "https://bridge.example/daylight",
            "digest_hours": "12",
            "new_signing_key": "on",
        },
    )
    db_session.expire_all()
    assert preferences.organisation_channels(
        db_session, server_secrets.key_integrity_key
    ).webhook_signing_key != (channels.webhook_signing_key)
