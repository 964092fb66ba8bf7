from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import pyotp
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy.orm import Session

from app.auth.credentials import create_account
from app.auth.models import Role, StaffAccount
from app.auth.second_factor import new_totp_secret
from app.keys.grants import grant_intake_key
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.custody.factories import IntakeKeyFixture


@dataclass(frozen=True)
class StaffMember:
    account: StaffAccount
    username: str
    password: str
    totp_secret: str

    def otp(self, steps_ahead: int = 0) -> str:
        return pyotp.TOTP(self.totp_secret).at(time.time() + 30 * steps_ahead)


def make_member(
    session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
    role: Role,
    *,
    grant: IntakeKeyFixture | None = None,
    username: str | None = None,
) -> StaffMember:
    username = username or f"{role.value}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    totp_secret = new_totp_secret()
    account, _ = create_account(
        session,
        username=username,
        role=role,
        password=password,
        totp_secret=totp_secret,
        settings=settings,
        server_secrets=server_secrets,
    )
    if grant is not None:
        grant_intake_key(
            session,
            intake_key=grant.key,
            intake_private=grant.private,
            grantee=account,
            granted_by_id=None,
            key_integrity_key=server_secrets.key_integrity_key,
        )
    return StaffMember(account=account, username=username, password=password, totp_secret=totp_secret)


def login(
    client: TestClient, member: StaffMember, *, otp: str | None = None, password: str | None = None
) -> Response:
    return client.post(
        "/api/v1/auth/login",
        json={
            "username": member.username,
            "password": member.password if password is None else password,
            "otp": member.otp() if otp is None else otp,
        },
    )


def login_token(client: TestClient) -> str:
    """The pre-login token the login page sets (cookie) and carries (hidden field)."""
    match = re.search(r'name="login_token" value="([^"]+)"', client.get("/login").text)
    assert match, "the login page carries no login token"
    return match.group(1)


def form_login(
    client: TestClient,
    member: StaffMember,
    *,
    otp: str | None = None,
    password: str | None = None,
    **extra: str,
) -> Response:
    """The HTML login form as a browser posts it: after loading the page, with its token."""
    return client.post(
        "/login",
        data={
            "login_token": login_token(client),
            "username": member.username,
            "password": member.password if password is None else password,
            "otp": member.otp() if otp is None else otp,
            **extra,
        },
        follow_redirects=False,
    )
