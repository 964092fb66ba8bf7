"""Passkeys as the staff second factor, over HTTP with a software authenticator: enrolment, login,
a relayed assertion from another origin, revocation, a cloned authenticator, the organisation's
policy, and the one script the login and account pages may run.

(tests/browser/test_passkeys.py does the same ceremonies in Chromium with its virtual
authenticator.)"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role, StaffAccount, StaffPasskey, StaffSession
from app.kit.clock import utc_now
from app.kit.config import Environment, Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, form_login, login, login_token
from tests.auth.soft_authenticator import SoftAuthenticator, options_from_page
from tests.conftest import CHEAP_ARGON2, Client, Organisation

ORIGIN = "https://testserver"  # the tests' staff_origin (tests/conftest.py)
RP_ID = "testserver"
PHISHING_ORIGIN = "https://testserver.login-staff.example"
PASSWORD = "a perfectly fine passphrase"


def csrf_token(client: TestClient, path: str = "/account") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match
    return match.group(1)


def enrol(client: TestClient, authenticator: SoftAuthenticator, name: str = "office key") -> Response:
    page = client.get("/account").text
    return client.post(
        "/account/passkeys",
        data={
            "csrf_token": csrf_token(client),
            "name": name,
            "passkey_response": authenticator.create(options_from_page(page)),
        },
        follow_redirects=False,
    )


def enrolled(signed_in: Client, member: StaffMember) -> SoftAuthenticator:
    authenticator = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID)
    assert enrol(signed_in(member), authenticator).status_code == 303
    return authenticator


def passkey_login(
    client: TestClient,
    member: StaffMember,
    authenticator: SoftAuthenticator,
    *,
    origin: str | None = None,
    password: str | None = None,
) -> Response:
    page = client.get("/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', page)
    assert token
    return client.post(
        "/login",
        data={
            "login_token": token.group(1),
            "username": member.username,
            "password": member.password if password is None else password,
            "otp": "",
            "passkey_response": authenticator.get(options_from_page(page), origin=origin),
        },
        follow_redirects=False,
    )


def signed_in_now(response: Response) -> bool:
    return response.status_code == 303 and any(
        header.startswith("__Host-daylight_session=") for header in response.headers.get_list("set-cookie")
    )


def last_login_event(db_session: Session, member: StaffMember) -> AuditEvent:
    db_session.expire_all()
    event = db_session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "auth.login", AuditEvent.object_id == str(member.account.id))
        .order_by(AuditEvent.seq.desc())
    ).first()
    assert event is not None
    return event


def test_a_member_enrols_a_passkey_and_logs_in_with_it_instead_of_a_code(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    authenticator = enrolled(signed_in, member)
    page = signed_in(member).get("/account").text
    assert "office key" in page
    assert "in use" in page

    response = passkey_login(staff_client, member, authenticator)

    assert signed_in_now(response)
    assert staff_client.get("/api/v1/auth/session").status_code == 200
    event = last_login_event(db_session, member)
    assert (event.outcome, '"factor":"passkey"' in event.details) == ("success", True)


def test_a_passkey_does_not_replace_the_password(
    signed_in: Client, staff_client: TestClient, organisation: Organisation
) -> None:
    member = organisation[Role.CASEWORKER]
    authenticator = enrolled(signed_in, member)

    response = passkey_login(staff_client, member, authenticator, password="not the password at all")

    assert response.status_code == 401
    assert not signed_in_now(response)


def test_an_assertion_relayed_from_another_origin_is_refused(
    signed_in: Client, staff_client: TestClient, organisation: Organisation
) -> None:
    """A phishing kit relays the real login page's challenge to its look-alike site and the
    member's answer back: the browser signs the look-alike's origin into the assertion."""
    member = organisation[Role.CASEWORKER]
    authenticator = enrolled(signed_in, member)

    response = passkey_login(staff_client, member, authenticator, origin=PHISHING_ORIGIN)

    assert response.status_code == 401
    assert "Wrong username, password, passkey or one-time code." in response.text
    assert not signed_in_now(response)


def test_an_assertion_for_another_browsers_login_page_is_refused(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, settings: Settings
) -> None:
    """The challenge is bound to the pre-login cookie of the page that showed it."""
    member = organisation[Role.CASEWORKER]
    authenticator = enrolled(signed_in, member)
    elsewhere = options_from_page(signed_in(organisation[Role.LEAD]).get("/login").text)

    response = staff_client.post(
        "/login",
        data={
            "login_token": login_token(staff_client),
            "username": member.username,
            "password": member.password,
            "passkey_response": authenticator.get(elsewhere),
        },
        follow_redirects=False,
    )

    assert response.status_code == 401


def test_an_authenticator_that_did_not_verify_the_user_is_refused(
    signed_in: Client, staff_client: TestClient, organisation: Organisation
) -> None:
    member = organisation[Role.CASEWORKER]
    authenticator = enrolled(signed_in, member)
    authenticator.user_verified = False

    assert passkey_login(staff_client, member, authenticator).status_code == 401


def test_a_revoked_passkey_is_refused(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    authenticator = enrolled(signed_in, member)
    client = signed_in(member)
    [passkey_id] = re.findall(r'action="/account/passkeys/([0-9a-f-]+)/revoke"', client.get("/account").text)

    revoked = client.post(
        f"/account/passkeys/{passkey_id}/revoke",
        data={"csrf_token": csrf_token(client)},
        follow_redirects=False,
    )

    assert revoked.status_code == 303
    assert "revoked" in client.get("/account").text
    assert passkey_login(staff_client, member, authenticator).status_code == 401
    assert last_login_event(db_session, member).outcome == "failure"


def test_a_cloned_authenticator_is_flagged_and_the_passkey_refused_from_then_on(
    signed_in: Client, settings: Settings, database: object, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    original = enrolled(signed_in, member)
    for _ in range(2):
        assert signed_in_now(passkey_login(signed_in(organisation[Role.LEAD]), member, original))
    clone = original.clone()  # its counter starts again below the server's

    response = passkey_login(signed_in(organisation[Role.AUDITOR]), member, clone)

    assert response.status_code == 401
    db_session.expire_all()
    [passkey] = db_session.scalars(select(StaffPasskey).where(StaffPasskey.account_id == member.account.id))
    assert passkey.clone_suspected_at is not None
    flagged = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == "auth.passkey_clone_suspected")
    )
    assert [e.object_id for e in flagged] == [str(member.account.id)]
    assert "clone suspected" in signed_in(member).get("/account").text
    # The genuine authenticator is refused too: nobody can tell which of the two is the member's.
    assert passkey_login(signed_in(organisation[Role.ADMIN]), member, original).status_code == 401


def test_a_forged_signature_cannot_flag_a_passkey_as_cloned(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    genuine = enrolled(signed_in, member)
    genuine.get({"challenge": "AA"})  # the server has not seen this one: it stays at 0
    forger = genuine.clone()
    forger.private_key = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID).private_key

    assert passkey_login(staff_client, member, forger).status_code == 401

    db_session.expire_all()
    [passkey] = db_session.scalars(select(StaffPasskey).where(StaffPasskey.account_id == member.account.id))
    assert passkey.clone_suspected_at is None


def test_a_passkey_row_written_into_the_database_opens_nothing(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    """Someone who can write the database but not read the server's secrets enrols their own
    authenticator for a member: the row's MAC fails and the assertion is refused."""
    member = organisation[Role.CASEWORKER]
    planted = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID)
    real = enrolled(signed_in, member)
    db_session.expire_all()
    [row] = db_session.scalars(select(StaffPasskey).where(StaffPasskey.account_id == member.account.id))
    planted_cose = planted._cose_public_key()
    db_session.add(
        StaffPasskey(
            id=uuid.uuid4(),
            account_id=member.account.id,
            name="planted",
            credential_id=planted.credential_id,
            public_key=planted_cose,
            sign_count=0,
            created_at=row.created_at,
            row_mac=row.row_mac,
        )
    )
    db_session.commit()

    assert passkey_login(staff_client, member, planted).status_code == 401
    assert signed_in_now(passkey_login(staff_client, member, real))


def test_enrolment_needs_a_fresh_password_and_this_sessions_challenge(
    signed_in: Client, organisation: Organisation
) -> None:
    member = organisation[Role.CASEWORKER]
    authenticator = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID)
    other_sessions_page = signed_in(organisation[Role.LEAD]).get("/account").text
    client = signed_in(member)

    response = client.post(
        "/account/passkeys",
        data={
            "csrf_token": csrf_token(client),
            "name": "office key",
            "passkey_response": authenticator.create(options_from_page(other_sessions_page)),
        },
    )

    assert response.status_code == 422
    assert "No passkey yet." in client.get("/account").text


def test_enrolment_needs_the_password_typed_within_the_step_up_window(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    """A session left open on an unlocked laptop cannot quietly add an authenticator."""
    member = organisation[Role.CASEWORKER]
    client = signed_in(member)
    options = options_from_page(client.get("/account").text)
    db_session.execute(
        update(StaffSession)
        .where(StaffSession.account_id == member.account.id)
        .values(reauthenticated_at=utc_now() - dt.timedelta(minutes=10))
    )
    db_session.commit()

    page = client.get("/account").text
    response = client.post(
        "/account/passkeys",
        data={
            "csrf_token": csrf_token(client),
            "name": "office key",
            "passkey_response": SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID).create(options),
        },
    )

    assert "data-passkey-options" not in page
    assert "confirm your password below first" in page
    assert response.status_code == 403
    assert "No passkey yet." in client.get("/account").text


def set_policy(signed_in: Client, organisation: Organisation, **fields: str) -> None:
    admin = signed_in(organisation[Role.ADMIN])
    response = admin.post(
        "/admin/login-policy",
        data={"csrf_token": csrf_token(admin, "/admin/login-policy"), **fields},
        follow_redirects=False,
    )
    assert response.status_code == 303


def test_with_passkeys_mandatory_a_code_only_login_is_refused(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    set_policy(signed_in, organisation, passkeys_required="true")  # and no TOTP fallback

    assert login(staff_client, member).status_code == 401
    assert form_login(staff_client, member).status_code == 401
    assert "requires a passkey" in staff_client.get("/login").text
    event = last_login_event(db_session, member)
    assert (event.outcome, '"reason":"passkey_required"' in event.details) == ("failure", True)


def test_the_totp_fallback_lets_only_members_without_a_passkey_use_a_code(
    signed_in: Client, organisation: Organisation
) -> None:
    with_passkey, without = organisation[Role.CASEWORKER], organisation[Role.LEAD]
    authenticator = enrolled(signed_in, with_passkey)
    set_policy(signed_in, organisation, passkeys_required="true", totp_fallback="true")

    assert login(signed_in(organisation[Role.AUDITOR]), with_passkey).status_code == 401
    assert login(signed_in(organisation[Role.AUDITOR]), without).status_code == 200
    assert signed_in_now(passkey_login(signed_in(organisation[Role.AUDITOR]), with_passkey, authenticator))


def test_the_policy_is_the_admins_to_set_and_is_audited(
    signed_in: Client, organisation: Organisation, db_session: Session
) -> None:
    for role in (Role.CASEWORKER, Role.LEAD, Role.AUDITOR):
        client = signed_in(organisation[role])
        assert client.get("/admin/login-policy").status_code == 403
    set_policy(signed_in, organisation, passkeys_required="true")

    db_session.expire_all()
    [event] = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_policy"))
    assert event.actor_id == organisation[Role.ADMIN].account.id
    assert "refused" in signed_in(organisation[Role.ADMIN]).get("/admin/login-policy").text


def test_only_the_passkey_pages_may_run_a_script_and_only_ours(
    signed_in: Client, staff_client: TestClient, organisation: Organisation
) -> None:
    login_page = staff_client.get("/login")
    nonce = re.search(r'<script nonce="([0-9a-f]+)" src="/static/passkey.js"', login_page.text)
    assert nonce
    assert f"script-src 'nonce-{nonce.group(1)}'" in login_page.headers["content-security-policy"]
    assert (
        staff_client.get("/login").headers["content-security-policy"]
        != login_page.headers["content-security-policy"]
    )  # a fresh nonce per page
    client = signed_in(organisation[Role.LEAD])
    for path in ("/tips", "/cases", "/keys", "/stations"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script" not in page.text, path
        assert "script-src" not in page.headers["content-security-policy"], path
    assert staff_client.get("/static/passkey.js").status_code == 200


def test_without_a_staff_origin_in_production_no_passkey_is_offered(
    data_dir: Path, server_secrets: ServerSecrets, database: object
) -> None:
    from app.entrypoints.apps import create_staff_app

    plain = Settings(data_dir=data_dir, argon2=CHEAP_ARGON2, environment=Environment.PRODUCTION)
    with TestClient(create_staff_app(plain, database=database), base_url=ORIGIN) as client:  # type: ignore[arg-type]
        page = client.get("/login")
    assert "data-passkey" not in page.text
    assert "<script" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]


# --- One-time links: a passkey instead of an authenticator app --------------------------------


def invite(signed_in: Client, organisation: Organisation, username: str) -> str:
    created = signed_in(organisation[Role.ADMIN]).post(
        "/api/v1/accounts", json={"username": username, "role": "caseworker"}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["link_path"])


def activate_with_passkey(
    client: TestClient, link_path: str, authenticator: SoftAuthenticator, password: str
) -> Response:
    page = client.get(link_path).text
    return client.post(
        link_path,
        data={
            "new_password": password,
            "passkey_name": "phone",
            "passkey_response": authenticator.create(options_from_page(page)),
        },
    )


def linked_member(db_session: Session, username: str, password: str) -> StaffMember:
    db_session.expire_all()
    account = db_session.scalars(select(StaffAccount).where(StaffAccount.username == username)).one()
    return StaffMember(account=account, username=username, password=password, totp_secret="")


def test_a_member_activates_with_a_passkey_and_has_no_code_to_phish(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    link_path = invite(signed_in, organisation, "passkey.member")
    authenticator = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID)

    done = activate_with_passkey(staff_client, link_path, authenticator, PASSWORD)

    assert done.status_code == 200, done.text
    member = linked_member(db_session, "passkey.member", PASSWORD)
    assert member.account.totp_secret_encrypted is None  # the secret the link page showed is gone
    assert signed_in_now(passkey_login(staff_client, member, authenticator))
    staff_client.cookies.clear()
    assert login(staff_client, member, otp="000000").status_code == 401


def test_with_passkeys_mandatory_and_no_fallback_a_link_sets_up_only_a_passkey(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    set_policy(signed_in, organisation, passkeys_required="true")
    link_path = invite(signed_in, organisation, "strict.member")
    page = staff_client.get(link_path).text
    assert "data-totp-secret" not in page
    assert 'data-passkey="create"' in page

    with_code = staff_client.post(link_path, data={"new_password": PASSWORD, "otp": "123456"})

    assert with_code.status_code == 422
    assert "requires a passkey" in with_code.text
    authenticator = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID)
    assert activate_with_passkey(staff_client, link_path, authenticator, PASSWORD).status_code == 200
    member = linked_member(db_session, "strict.member", PASSWORD)
    assert signed_in_now(passkey_login(staff_client, member, authenticator))


def test_a_second_factor_reset_revokes_the_old_passkeys(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    lost = enrolled(signed_in, member)
    admin = signed_in(organisation[Role.ADMIN])
    reset = admin.post(f"/api/v1/accounts/{member.account.id}/reset-2fa").json()["link_path"]
    replacement = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID)
    page = staff_client.get(reset).text

    done = staff_client.post(
        reset,
        data={
            "current_password": member.password,
            "passkey_response": replacement.create(options_from_page(page)),
        },
    )

    assert done.status_code == 200, done.text
    assert passkey_login(staff_client, member, lost).status_code == 401
    assert signed_in_now(passkey_login(staff_client, member, replacement))


def test_a_password_reset_is_proved_with_the_members_passkey_not_the_link_alone(
    signed_in: Client, staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    link_path = invite(signed_in, organisation, "forgetful.member")
    authenticator = SoftAuthenticator(origin=ORIGIN, rp_id=RP_ID)
    assert activate_with_passkey(staff_client, link_path, authenticator, PASSWORD).status_code == 200
    member = linked_member(db_session, "forgetful.member", PASSWORD)
    admin = signed_in(organisation[Role.ADMIN])
    reset = admin.post(f"/api/v1/accounts/{member.account.id}/reset-password").json()["link_path"]
    page = staff_client.get(reset).text
    new_password = "another long passphrase 7"

    by_link_alone = staff_client.post(reset, data={"new_password": new_password, "otp": "000000"})
    proved = staff_client.post(
        reset,
        data={
            "new_password": new_password,
            "passkey_response": authenticator.get(options_from_page(page)),
        },
    )

    assert by_link_alone.status_code == 422
    assert proved.status_code == 200, proved.text
    assert signed_in_now(passkey_login(staff_client, member, authenticator, password=new_password))
