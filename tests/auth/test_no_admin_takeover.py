"""An admin cannot take over the accounts they create or reset (issue 18).

The admin receives each one-time link, and nothing stops them from opening it: choosing the
password and the second factor, and so making the key pair a grant would be sealed to. What
stops the takeover is that completing an activation or a password reset leaves the account
unconfirmed, and that no key grant is offered or made until a lead has typed the fingerprint
the member reads out from their own account page (app.auth.confirmation). A member whose link
was used finds it used up; a fingerprint from anyone else does not match and is recorded.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth import accounts
from app.auth.models import Role, StaffAccount
from app.auth.password_keys import key_fingerprint
from app.crypto import sealing
from app.custody.models import IntakeKeyGrant
from app.entrypoints import cli
from app.entrypoints.organisation import init_organisation
from app.keys.eligibility import content_reader
from app.kit.config import Settings, load_settings
from app.kit.db import Database
from app.kit.server_secrets import load_server_secrets
from tests.auth.factories import StaffMember, login
from tests.conftest import CHEAP_ARGON2, Organisation
from tests.support.confirmation import confirm_as_lead, member_fingerprint

Client = Callable[[StaffMember], TestClient]

PASSWORD = "correct horse battery staple"
FINGERPRINT_ON_PAGE = re.compile(r"<code data-fingerprint>([0-9a-f ]+)</code>")
TOTP_SECRET_ON_PAGE = re.compile(r"<code class=\"secret\" data-totp-secret>([A-Z2-7]+)</code>")
LINK_USED = "This link is not valid"
MISMATCH = "That code does not match the member's key."


def invite(admin: TestClient, username: str, role: str = "caseworker") -> tuple[uuid.UUID, str]:
    created = admin.post("/api/v1/accounts", json={"username": username, "role": role})
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["account_id"]), created.json()["link_path"]


def complete_on_the_link_page(client: TestClient, link_path: str, password: str = PASSWORD) -> str:
    """Whoever holds the link: read the secret off the page, choose a password, prove a code."""
    page = client.get(link_path)
    assert page.status_code == 200, page.text
    match = TOTP_SECRET_ON_PAGE.search(page.text)
    assert match, "the link page shows the second factor's secret"
    secret = match.group(1)
    done = client.post(link_path, data={"new_password": password, "otp": pyotp.TOTP(secret).now()})
    assert done.status_code == 200, done.text
    assert "You can now log in" in done.text
    return secret


def fresh_fingerprint() -> str:
    """A fingerprint of some other key: all anyone but the member could read out."""
    return key_fingerprint(sealing.generate_private_key().public_key().raw)


def confirmations(session: Session, account_id: uuid.UUID) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "account.confirm", AuditEvent.object_id == str(account_id))
            .order_by(AuditEvent.seq)
        )
    )


def grants_of(session: Session, account_id: uuid.UUID) -> list[IntakeKeyGrant]:
    return list(session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.account_id == account_id)))


def account(session: Session, account_id: uuid.UUID) -> StaffAccount:
    session.expire_all()
    return session.get_one(StaffAccount, account_id)


def test_an_admin_who_completes_a_members_activation_gets_no_key_and_is_noticed(
    staff_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    lead = signed_in(organisation[Role.LEAD])
    account_id, link_path = invite(admin, "new.caseworker")

    # The admin opens the member's link themselves and completes it.
    complete_on_the_link_page(admin, link_path)
    taken = account(db_session, account_id)
    assert taken.public_key is not None
    assert taken.confirmed_at is None
    assert taken.confirmed_by_id is None
    assert admin.get(f"/api/v1/accounts/{account_id}").json()["confirmed"] is False
    assert "awaiting a lead's confirmation" in admin.get("/admin/accounts").text
    assert "awaiting a lead's confirmation" in admin.get(f"/admin/accounts/{account_id}").text

    # No key grant is offered, and none can be made, through the API or the page.
    [listed] = [c for c in lead.get("/api/v1/key-grants").json() if c["username"] == "new.caseworker"]
    assert listed["confirmed"] is False
    assert listed["key_fingerprint"] is None  # the lead must hear it from the member
    refused = lead.put(f"/api/v1/key-grants/{account_id}")
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "not_confirmed",
        "detail": "The member has not been confirmed by a lead yet: compare their key fingerprint first.",
    }
    keys_page = lead.get("/keys").text
    assert 'data-awaiting="new.caseworker"' in keys_page
    assert 'data-member="new.caseworker"' not in keys_page
    assert key_fingerprint(taken.public_key) not in keys_page
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', keys_page)
    assert csrf
    page_grant = lead.post(
        f"/keys/{account_id}/grant", data={"csrf_token": csrf.group(1)}, follow_redirects=False
    )
    assert page_grant.status_code == 409
    assert grants_of(db_session, account_id) == []
    assert content_reader(db_session, account_id, organisation.intake.key.version) is None

    # The real member never activated: whatever the lead is read out does not match the key.
    mismatch = lead.post(f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": fresh_fingerprint()})
    assert mismatch.status_code == 422
    assert mismatch.json()["error"] == "fingerprint_mismatch"
    assert mismatch.json()["detail"].startswith(MISMATCH)
    on_the_page = lead.post(
        f"/keys/confirm/{account_id}",
        data={"csrf_token": csrf.group(1), "fingerprint": fresh_fingerprint()},
        follow_redirects=False,
    )
    assert on_the_page.status_code == 422
    assert MISMATCH.replace("'", "&#39;") in on_the_page.text
    # Both refusals are in the audit log (they committed although the requests failed).
    failures = confirmations(db_session, account_id)
    assert [(e.outcome, json.loads(e.details), e.actor_id) for e in failures] == [
        ("failure", {"reason": "fingerprint_mismatch"}, organisation[Role.LEAD].account.id)
    ] * 2
    assert account(db_session, account_id).confirmed_at is None

    # The real member opens the link the admin was to hand over: it is used up.
    staff_client.cookies.clear()
    used = staff_client.get(link_path)
    assert used.status_code == 404
    assert LINK_USED in used.text
    assert staff_client.get(f"/api/v1/account-links/{link_path.removeprefix('/link/')}").status_code == 404


def test_a_member_whose_fingerprint_a_lead_confirms_can_be_granted_the_key(
    staff_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    lead = signed_in(organisation[Role.LEAD])
    lead_id = organisation[Role.LEAD].account.id
    account_id, link_path = invite(admin, "real.member")

    # The member activates and reads the fingerprint from their own account page.
    staff_client.cookies.clear()
    secret = complete_on_the_link_page(staff_client, link_path)
    member = StaffMember(
        account=account(db_session, account_id), username="real.member", password=PASSWORD, totp_secret=secret
    )
    assert login(staff_client, member, otp=member.otp(1)).status_code == 200
    [read_out] = FINGERPRINT_ON_PAGE.findall(staff_client.get("/account").text)
    assert read_out == member_fingerprint(db_session, account_id)

    # Typed by the lead as heard: case, spaces and dashes do not matter.
    typed = read_out.upper().replace(" ", "-")
    confirmed = lead.post(f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": typed})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["confirmed"] is True
    assert confirmed.json()["username"] == "real.member"
    row = account(db_session, account_id)
    assert row.confirmed_at is not None
    assert row.confirmed_by_id == lead_id
    [event] = confirmations(db_session, account_id)
    assert (event.outcome, event.actor_id, event.object_type) == ("success", lead_id, "account")
    assert json.loads(event.details) == {"fingerprint": read_out}
    # Confirming again changes nothing.
    assert (
        lead.post(f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": read_out}).status_code == 200
    )
    assert len(confirmations(db_session, account_id)) == 1

    [listed] = [c for c in lead.get("/api/v1/key-grants").json() if c["username"] == "real.member"]
    assert (listed["confirmed"], listed["key_fingerprint"]) == (True, read_out)
    assert content_reader(db_session, account_id, organisation.intake.key.version) is None  # no grant yet
    assert lead.put(f"/api/v1/key-grants/{account_id}").status_code == 204
    assert len(grants_of(db_session, account_id)) == 1
    reader = content_reader(db_session, account_id, organisation.intake.key.version)
    assert reader is not None
    assert reader.id == account_id


def test_the_keys_page_confirms_with_the_fingerprint_typed_in(
    staff_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    lead = signed_in(organisation[Role.LEAD])
    account_id, link_path = invite(admin, "page.member", "lead")
    staff_client.cookies.clear()
    complete_on_the_link_page(staff_client, link_path)
    page = lead.get("/keys").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    assert f'action="/keys/confirm/{account_id}"' in page
    done = lead.post(
        f"/keys/confirm/{account_id}",
        data={"csrf_token": csrf.group(1), "fingerprint": f"  {member_fingerprint(db_session, account_id)} "},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/keys?done=member_confirmed"
    after = lead.get("/keys?done=member_confirmed").text
    assert "Key confirmed" in after
    assert 'data-awaiting="page.member"' not in after
    assert 'data-member="page.member"' in after
    # Without the session's CSRF token, nothing happens.
    assert lead.post(f"/keys/confirm/{account_id}", data={"fingerprint": "x"}).status_code == 403


def test_a_password_reset_leaves_the_account_unconfirmed_and_without_its_grants(
    staff_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    lead = signed_in(organisation[Role.LEAD])
    member = organisation[Role.CASEWORKER]
    version = organisation.intake.key.version
    assert account(db_session, member.account.id).confirmed_at is not None
    assert content_reader(db_session, member.account.id, version) is not None

    # A 2FA reset asks for the current password and keeps the key pair: still confirmed.
    reset_2fa = admin.post(f"/api/v1/accounts/{member.account.id}/reset-2fa").json()["link_path"]
    staff_client.cookies.clear()
    secret = staff_client.get(f"/api/v1/account-links/{reset_2fa.removeprefix('/link/')}").json()[
        "totp_secret"
    ]
    done = staff_client.post(
        reset_2fa,
        data={"current_password": member.password, "otp": pyotp.TOTP(secret).now()},
    )
    assert done.status_code == 200, done.text
    assert account(db_session, member.account.id).confirmed_at is not None
    assert len(grants_of(db_session, member.account.id)) == 1

    # A password reset makes a new key pair: unconfirmed, and the grants are gone.
    reset = admin.post(f"/api/v1/accounts/{member.account.id}/reset-password").json()["link_path"]
    # The next step's code: the one just used is not accepted twice.
    next_code = pyotp.TOTP(secret).at(time.time() + 30)
    done = staff_client.post(reset, data={"new_password": "a new long passphrase", "otp": next_code})
    assert done.status_code == 200, done.text
    row = account(db_session, member.account.id)
    assert (row.confirmed_at, row.confirmed_by_id) == (None, None)
    assert grants_of(db_session, member.account.id) == []
    assert content_reader(db_session, member.account.id, version) is None
    assert lead.put(f"/api/v1/key-grants/{member.account.id}").json()["error"] == "not_confirmed"
    assert admin.get(f"/api/v1/accounts/{member.account.id}").json()["confirmed"] is False

    confirm_as_lead(lead, db_session, member.account.id)
    assert lead.put(f"/api/v1/key-grants/{member.account.id}").status_code == 204


def test_a_lead_cannot_confirm_themselves(
    staff_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    account_id, link_path = invite(admin, "new.lead", "lead")
    staff_client.cookies.clear()
    secret = complete_on_the_link_page(staff_client, link_path)
    new_lead = StaffMember(
        account=account(db_session, account_id), username="new.lead", password=PASSWORD, totp_secret=secret
    )
    assert login(staff_client, new_lead, otp=new_lead.otp(1)).status_code == 200
    [own] = FINGERPRINT_ON_PAGE.findall(staff_client.get("/account").text)
    keys_page = staff_client.get("/keys").text
    assert "Your own key: another lead confirms it with you." in keys_page
    assert f'action="/keys/confirm/{account_id}"' not in keys_page
    refused = staff_client.post(f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": own})
    assert refused.status_code == 403
    assert refused.json()["error"] == "own_confirmation"
    assert account(db_session, account_id).confirmed_at is None
    assert confirmations(db_session, account_id) == []


def test_an_account_without_a_key_pair_cannot_be_confirmed(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    lead = signed_in(organisation[Role.LEAD])
    account_id, _ = invite(admin, "not.yet")
    refused = lead.post(f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": fresh_fingerprint()})
    assert refused.status_code == 409
    assert refused.json()["error"] == "not_activated"
    unknown = lead.post(f"/api/v1/accounts/{uuid.uuid4()}/confirm", json={"fingerprint": fresh_fingerprint()})
    assert unknown.status_code == 404
    # Admins issue links; they do not confirm.
    assert admin.post(f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": "x"}).status_code == 403
    assert confirmations(db_session, account_id) == []


def test_a_stored_key_substituted_by_a_database_writer_cannot_be_confirmed(
    staff_client: TestClient, signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    """The lead confirms the key a grant would be sealed to, checked against its MAC first."""
    admin = signed_in(organisation[Role.ADMIN])
    lead = signed_in(organisation[Role.LEAD])
    account_id, link_path = invite(admin, "swapped.member")
    staff_client.cookies.clear()
    complete_on_the_link_page(staff_client, link_path)
    members = member_fingerprint(db_session, account_id)
    writers = sealing.generate_private_key().public_key().raw
    db_session.execute(update(StaffAccount).where(StaffAccount.id == account_id).values(public_key=writers))
    db_session.commit()
    # The writer's own fingerprint: the stored key fails its MAC, nothing is confirmed.
    refused = lead.post(
        f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": key_fingerprint(writers)}
    )
    assert refused.status_code == 503
    assert refused.json()["error"] == "stale_key"
    # Nor with the member's: the stored key is checked before anything is compared.
    assert (
        lead.post(f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": members}).status_code == 503
    )
    assert account(db_session, account_id).confirmed_at is None


@dataclass(frozen=True)
class DataDir:
    path: Path
    settings: Settings
    database: Database
    recovery_key: str


@pytest.fixture
def data_dir_org(
    data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DataDir]:
    """An organisation in a data dir, as `daylight init` leaves it, for the CLI."""
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    settings = load_settings(data_dir / "org").model_copy(update={"argon2": CHEAP_ARGON2})
    database = Database.from_settings(settings)
    created = init_organisation(settings, database)
    try:
        yield DataDir(data_dir / "org", settings, database, created.recovery_key)
    finally:
        database.engine.dispose()


def test_the_operator_confirms_the_first_lead_from_the_command_line(
    data_dir_org: DataDir, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    org = data_dir_org
    # (In an organisation the first admin invites the lead in the staff app; forced here, for brevity.)
    invite = ["accounts", "invite", "--data-dir", str(org.path), "--username", "first.lead", "--role", "lead"]
    assert cli.main([*invite, "--force", "--reason", "the test's first lead"]) == 0
    [token] = re.findall(r"/link/([A-Za-z0-9_-]{43})", capsys.readouterr().out)
    secrets = load_server_secrets(org.settings.secrets_dir)
    with org.database.transaction() as session:
        opened = accounts.open_link(session, token)
        secret = accounts.enrolment_secret(opened, secrets)
        assert secret is not None
        accounts.complete_link(
            session,
            opened,
            otp=pyotp.TOTP(secret).now(),
            new_password=PASSWORD,
            current_password=None,
            settings=org.settings,
            server_secrets=secrets,
        )
        account_id = opened.account.id
        read_out = member_fingerprint(session, account_id)

    def recover() -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(org.recovery_key + "\n"))
        return cli.main(["keys", "recover", "--data-dir", str(org.path), "--username", "first.lead"])

    # Not confirmed yet: the recovery key grants nothing.
    assert recover() == 1
    assert "has not been confirmed yet" in capsys.readouterr().err

    confirm = ["accounts", "confirm", "first.lead", "--data-dir", str(org.path), "--fingerprint"]
    assert cli.main([*confirm, fresh_fingerprint()]) == 1
    assert "does not match" in capsys.readouterr().err
    assert cli.main([*confirm, read_out.replace(" ", "-")]) == 0
    assert "Confirmed the key pair of first.lead" in capsys.readouterr().out
    assert (
        cli.main(["accounts", "confirm", "nobody", "--data-dir", str(org.path), "--fingerprint", read_out])
        == 1
    )

    with org.database.transaction() as session:
        row = session.get_one(StaffAccount, account_id)
        assert row.confirmed_at is not None
        assert row.confirmed_by_id is None  # the operator, not a member
        events = confirmations(session, account_id)
        assert [(e.outcome, e.role, e.actor_id) for e in events] == [
            ("failure", "system", None),
            ("success", "system", None),
        ]

    assert recover() == 0
    with org.database.transaction() as session:
        assert len(grants_of(session, account_id)) == 1
    # Everything the commands recorded is signed and intact.
    assert cli.main(["audit", "verify", "--data-dir", str(org.path)]) == 0
