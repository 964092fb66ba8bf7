"""Account lifecycle over the API: invitations, one-time links, lockout, resets, step-up, grants."""

from __future__ import annotations

import datetime as dt
import uuid

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.deps import SECURE_COOKIE_NAME
from app.auth.models import AccountLink, Role, StaffAccount, StaffSession
from app.custody.models import IntakeKeyGrant
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, login, make_member
from tests.conftest import Organisation
from tests.intake.factories import make_tip
from tests.support.confirmation import confirm_as_lead

GOOD_PASSWORD = "correct horse battery staple"


def as_admin(client: TestClient, organisation: Organisation, step: int = 0) -> None:
    client.cookies.clear()
    admin = organisation[Role.ADMIN]
    assert login(client, admin, otp=admin.otp(step)).status_code == 200


def invite(client: TestClient, username: str, role: str) -> str:
    response = client.post("/api/v1/accounts", json={"username": username, "role": role})
    assert response.status_code == 201, response.text
    link_path: str = response.json()["link_path"]
    assert link_path.startswith("/link/")
    return link_path.removeprefix("/link/")


def activate(client: TestClient, token: str, password: str = GOOD_PASSWORD) -> str:
    """Complete an activation link; returns the TOTP secret the member enrolled."""
    client.cookies.clear()
    view = client.get(f"/api/v1/account-links/{token}")
    assert view.status_code == 200
    secret: str = view.json()["totp_secret"]
    assert view.json()["totp_uri"].startswith("otpauth://totp/")
    # The previous step's code: a code is accepted once, and later logins use steps 0 and +1.
    previous_step_code = pyotp.TOTP(secret).at(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
    done = client.post(
        f"/api/v1/account-links/{token}", json={"otp": previous_step_code, "new_password": password}
    )
    assert done.status_code == 204, done.text
    return secret


def login_as(client: TestClient, username: str, password: str, secret: str, step: int = 0) -> int:
    client.cookies.clear()
    otp = pyotp.TOTP(secret).at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30 * step))
    return client.post(
        "/api/v1/auth/login", json={"username": username, "password": password, "otp": otp}
    ).status_code


def test_an_invited_member_activates_once_and_logs_in(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    as_admin(staff_client, organisation)
    token = invite(staff_client, "new.caseworker", "caseworker")
    account = db_session.scalars(select(StaffAccount).where(StaffAccount.username == "new.caseworker")).one()
    assert account.login_verifier is None
    assert account.public_key is None
    # No login before activation, whatever is typed.
    assert login_as(staff_client, "new.caseworker", GOOD_PASSWORD, pyotp.random_base32()) == 401

    secret = activate(staff_client, token)
    db_session.expire_all()
    assert db_session.get_one(StaffAccount, account.id).public_key is not None
    assert login_as(staff_client, "new.caseworker", GOOD_PASSWORD, secret, step=1) == 200
    # Single use.
    staff_client.cookies.clear()
    assert staff_client.get(f"/api/v1/account-links/{token}").status_code == 404
    assert staff_client.post(f"/api/v1/account-links/{token}", json={"otp": "123456"}).status_code == 404


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pass", "weak_password"),
        ("password123456", "weak_password"),
        ("iloveyou2024!!", "weak_password"),
    ],
)
def test_weak_passwords_are_refused_and_the_link_still_works(
    staff_client: TestClient, organisation: Organisation, password: str, reason: str
) -> None:
    as_admin(staff_client, organisation)
    token = invite(staff_client, "weak.one", "lead")
    staff_client.cookies.clear()
    secret = staff_client.get(f"/api/v1/account-links/{token}").json()["totp_secret"]
    refused = staff_client.post(
        f"/api/v1/account-links/{token}", json={"otp": pyotp.TOTP(secret).now(), "new_password": password}
    )
    assert refused.status_code == 422
    assert refused.json()["error"] == reason
    activate(staff_client, token)


def test_a_wrong_code_does_not_activate(staff_client: TestClient, organisation: Organisation) -> None:
    as_admin(staff_client, organisation)
    token = invite(staff_client, "wrong.code", "lead")
    staff_client.cookies.clear()
    response = staff_client.post(
        f"/api/v1/account-links/{token}", json={"otp": "000000", "new_password": GOOD_PASSWORD}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "code_rejected"


def test_an_expired_link_is_refused(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    as_admin(staff_client, organisation)
    token = invite(staff_client, "late.member", "caseworker")
    link = db_session.scalars(select(AccountLink)).one()
    link.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    db_session.commit()
    staff_client.cookies.clear()
    assert staff_client.get(f"/api/v1/account-links/{token}").status_code == 404


def test_lockout_backs_off_and_refuses_even_correct_credentials(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    for _ in range(5):
        assert login(staff_client, member, password="wrong password").status_code == 401
    db_session.expire_all()
    account = db_session.get_one(StaffAccount, member.account.id)
    assert account.locked_until is not None
    locked = login(staff_client, member)
    assert locked.status_code == 401
    assert locked.json()["error"] == "invalid_credentials"  # the same answer as any failure
    account.locked_until = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    db_session.commit()
    assert login(staff_client, member, otp=member.otp(1)).status_code == 200


def test_lockout_durations_double_up_to_a_day() -> None:
    from app.auth.lockout import lockout_duration

    assert lockout_duration(4) is None
    assert lockout_duration(5) == dt.timedelta(minutes=1)
    assert lockout_duration(10) == dt.timedelta(minutes=32)
    assert lockout_duration(40) == dt.timedelta(days=1)


def _session_count(db_session: Session, account_id: uuid.UUID) -> int:
    db_session.expire_all()
    return len(db_session.scalars(select(StaffSession).where(StaffSession.account_id == account_id)).all())


@pytest.mark.parametrize("change", ["role", "deactivate", "reset-2fa", "reset-password"])
def test_admin_changes_end_the_members_sessions_at_once(
    staff_client: TestClient, organisation: Organisation, db_session: Session, change: str
) -> None:
    member = organisation[Role.CASEWORKER]
    with TestClient(staff_client.app, base_url="https://testserver") as member_client:
        assert login(member_client, member).status_code == 200
        assert member_client.get("/api/v1/auth/session").status_code == 200
        as_admin(staff_client, organisation)
        target = f"/api/v1/accounts/{member.account.id}"
        response = {
            "role": lambda: staff_client.patch(target, json={"role": "lead"}),
            "deactivate": lambda: staff_client.patch(target, json={"is_active": False}),
            "reset-2fa": lambda: staff_client.post(f"{target}/reset-2fa"),
            "reset-password": lambda: staff_client.post(f"{target}/reset-password"),
        }[change]()
        assert response.status_code in (200, 201)
        assert member_client.get("/api/v1/auth/session").status_code == 401
    assert _session_count(db_session, member.account.id) == 0


def test_admins_cannot_demote_or_deactivate_themselves(
    staff_client: TestClient, organisation: Organisation
) -> None:
    as_admin(staff_client, organisation)
    me = f"/api/v1/accounts/{organisation[Role.ADMIN].account.id}"
    assert staff_client.patch(me, json={"role": "lead"}).status_code == 409
    assert staff_client.patch(me, json={"is_active": False}).status_code == 409


def test_a_two_factor_reset_needs_the_password_and_a_new_code(
    staff_client: TestClient, organisation: Organisation
) -> None:
    member = organisation[Role.LEAD]
    as_admin(staff_client, organisation)
    token = staff_client.post(f"/api/v1/accounts/{member.account.id}/reset-2fa").json()["link_path"][6:]
    staff_client.cookies.clear()
    assert login(staff_client, member).status_code == 401  # old second factor gone
    secret = staff_client.get(f"/api/v1/account-links/{token}").json()["totp_secret"]
    assert secret != member.totp_secret
    bad = staff_client.post(
        f"/api/v1/account-links/{token}", json={"otp": pyotp.TOTP(secret).now(), "current_password": "not it"}
    )
    assert bad.status_code == 422
    ok = staff_client.post(
        f"/api/v1/account-links/{token}",
        json={"otp": pyotp.TOTP(secret).now(), "current_password": member.password},
    )
    assert ok.status_code == 204
    assert login_as(staff_client, member.username, member.password, secret, step=1) == 200


def test_a_password_reset_leaves_the_member_without_keys_until_a_new_grant(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    member = organisation[Role.CASEWORKER]
    tip_id, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    as_admin(staff_client, organisation)
    token = staff_client.post(f"/api/v1/accounts/{member.account.id}/reset-password").json()["link_path"][6:]
    staff_client.cookies.clear()
    view = staff_client.get(f"/api/v1/account-links/{token}").json()
    assert view["totp_secret"] is None  # the second factor stays as it was
    done = staff_client.post(
        f"/api/v1/account-links/{token}", json={"otp": member.otp(), "new_password": "a new long passphrase"}
    )
    assert done.status_code == 204
    assert (
        db_session.scalars(select(IntakeKeyGrant).where(IntakeKeyGrant.account_id == member.account.id)).all()
        == []
    )
    assert login_as(staff_client, member.username, "a new long passphrase", member.totp_secret, 1) == 200
    assert staff_client.get("/api/v1/auth/session").json()["holds_intake_key"] is False
    assert staff_client.get(f"/api/v1/tips/{tip_id}").status_code == 404


def test_key_grants_need_a_recent_password_and_reach_the_member(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    tip_id, _ = make_tip(db_session, server_secrets, narrative="granted reading")
    db_session.commit()
    as_admin(staff_client, organisation)
    token = invite(staff_client, "fresh.caseworker", "caseworker")
    secret = activate(staff_client, token)
    fresh_id = db_session.scalars(
        select(StaffAccount.id).where(StaffAccount.username == "fresh.caseworker")
    ).one()

    lead = organisation[Role.LEAD]
    with TestClient(staff_client.app, base_url="https://testserver") as lead_client:
        assert login(lead_client, lead).status_code == 200
        candidates = {c["username"]: c for c in lead_client.get("/api/v1/key-grants").json()}
        assert candidates["fresh.caseworker"]["holds_intake_key"] is False
        # The lead's password is older than five minutes: step up first.
        db_session.execute(
            StaffSession.__table__.update().values(
                reauthenticated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
            )
        )
        db_session.commit()
        refused = lead_client.put(f"/api/v1/key-grants/{fresh_id}")
        assert refused.status_code == 403
        assert refused.json()["error"] == "step_up_required"
        assert lead_client.post("/api/v1/auth/step-up", json={"password": "wrong"}).status_code == 403
        assert lead_client.post("/api/v1/auth/step-up", json={"password": lead.password}).status_code == 204
        # Activated through a link: no grant before a lead has confirmed the member's key pair.
        assert candidates["fresh.caseworker"]["confirmed"] is False
        unconfirmed = lead_client.put(f"/api/v1/key-grants/{fresh_id}")
        assert unconfirmed.status_code == 409
        assert unconfirmed.json()["error"] == "not_confirmed"
        confirm_as_lead(lead_client, db_session, fresh_id)
        assert lead_client.put(f"/api/v1/key-grants/{fresh_id}").status_code == 204

        assert login_as(staff_client, "fresh.caseworker", GOOD_PASSWORD, secret, step=0) == 200
        assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["narrative"] == "granted reading"

        assert lead_client.delete(f"/api/v1/key-grants/{fresh_id}").status_code == 204
        # Revocation ends the session that carried the unlocked key...
        assert staff_client.get(f"/api/v1/tips/{tip_id}").status_code == 401
        # ...and the next login has no key.
        assert login_as(staff_client, "fresh.caseworker", GOOD_PASSWORD, secret, step=1) == 200
        assert staff_client.get(f"/api/v1/tips/{tip_id}").status_code == 404


def test_a_lead_without_the_key_cannot_grant_it(
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    settings: Settings,
) -> None:
    keyless = make_member(db_session, settings, server_secrets, Role.LEAD)
    db_session.commit()
    assert login(staff_client, keyless).status_code == 200
    response = staff_client.put(f"/api/v1/key-grants/{organisation[Role.CASEWORKER].account.id}")
    assert response.status_code == 403
    assert response.json()["error"] == "not_key_holder"
    # A lead who holds the key still cannot grant it to an admin or an auditor.
    staff_client.cookies.clear()
    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    for role in (Role.ADMIN, Role.AUDITOR):
        refused = staff_client.put(f"/api/v1/key-grants/{organisation[role].account.id}")
        assert refused.status_code == 409
        assert refused.json()["error"] == "cannot_hold_key"


def test_changing_the_password_keeps_the_keys_and_ends_other_sessions(
    staff_client: TestClient, organisation: Organisation, db_session: Session, server_secrets: ServerSecrets
) -> None:
    member: StaffMember = organisation[Role.CASEWORKER]
    tip_id, _ = make_tip(db_session, server_secrets, narrative="still readable")
    db_session.commit()
    with TestClient(staff_client.app, base_url="https://testserver") as other_device:
        assert login(other_device, member, otp=member.otp(-1)).status_code == 200
        assert login(staff_client, member).status_code == 200
        weak = staff_client.post(
            "/api/v1/auth/password", json={"current_password": member.password, "new_password": "short"}
        )
        assert weak.status_code == 422
        wrong = staff_client.post(
            "/api/v1/auth/password",
            json={"current_password": "nope", "new_password": "another long passphrase"},
        )
        assert wrong.status_code == 403
        changed = staff_client.post(
            "/api/v1/auth/password",
            json={"current_password": member.password, "new_password": "another long passphrase"},
        )
        assert changed.status_code == 204
        assert other_device.get("/api/v1/auth/session").status_code == 401
        assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["narrative"] == "still readable"
    assert login_as(staff_client, member.username, member.password, member.totp_secret, 1) == 401
    assert login_as(staff_client, member.username, "another long passphrase", member.totp_secret, 1) == 200
    assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["narrative"] == "still readable"


def test_log_out_everywhere(staff_client: TestClient, organisation: Organisation) -> None:
    member = organisation[Role.AUDITOR]
    with TestClient(staff_client.app, base_url="https://testserver") as other_device:
        assert login(other_device, member, otp=member.otp(-1)).status_code == 200
        assert login(staff_client, member).status_code == 200
        assert len(staff_client.get("/api/v1/auth/sessions").json()) == 2
        assert staff_client.post("/api/v1/auth/logout-everywhere").status_code == 204
        assert other_device.get("/api/v1/auth/session").status_code == 401
        assert SECURE_COOKIE_NAME not in staff_client.cookies
        assert staff_client.get("/api/v1/auth/session").status_code == 401
