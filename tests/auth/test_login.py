"""Two-factor login, sessions and their cookie (DESIGN 6; the rest of staff identity is issue 3)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.credentials import authenticate
from app.auth.deps import LOOPBACK_COOKIE_NAME, SECURE_COOKIE_NAME
from app.auth.models import Role, StaffAccount, StaffSession
from app.auth.principal import Principal
from app.auth.sessions import ExpiredSession, resume_session, start_session
from app.entrypoints.apps import create_staff_app
from app.entrypoints.organisation import init_organisation
from app.kit.config import Environment, Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from tests.auth.factories import login, make_member
from tests.conftest import CHEAP_ARGON2, Organisation
from tests.custody.factories import IntakeKeyFixture

INVALID = {"error": "invalid_credentials", "detail": "Wrong username, password or one-time code."}


def session_cookie_header(response_headers: list[str]) -> str:
    [header] = [h for h in response_headers if h.startswith(SECURE_COOKIE_NAME + "=")]
    return header


def test_login_sets_a_host_prefixed_secure_strict_httponly_cookie(
    staff_client: TestClient, organisation: Organisation
) -> None:
    response = login(staff_client, organisation[Role.CASEWORKER])
    assert response.status_code == 200
    assert response.json() == {
        "username": organisation[Role.CASEWORKER].username,
        "role": "caseworker",
        "holds_intake_key": True,
    }
    header = session_cookie_header(response.headers.get_list("set-cookie"))
    attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
    assert {"secure", "httponly", "path"} <= attributes
    assert "samesite=strict" in header.lower()
    assert "domain" not in attributes


@pytest.mark.parametrize("mistake", ["password", "otp", "username"])
def test_every_wrong_credential_gets_the_same_401(
    staff_client: TestClient, organisation: Organisation, mistake: str
) -> None:
    member = organisation[Role.CASEWORKER]
    body = {"username": member.username, "password": member.password, "otp": member.otp()}
    body[mistake] = {"password": "wrong password!", "otp": "000000", "username": "nobody"}[mistake]
    if mistake == "otp" and body["otp"] == member.otp():
        body["otp"] = "111111"
    response = staff_client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 401
    assert response.json() == INVALID
    assert "set-cookie" not in response.headers


def test_failed_logins_are_counted_and_committed(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.LEAD]
    for _ in range(3):
        assert login(staff_client, member, password="not the password").status_code == 401
    db_session.expire_all()
    assert db_session.get_one(StaffAccount, member.account.id).failed_logins == 3
    assert login(staff_client, member).status_code == 200
    db_session.expire_all()
    assert db_session.get_one(StaffAccount, member.account.id).failed_logins == 0


def test_a_one_time_code_is_never_accepted_twice(
    staff_client: TestClient, organisation: Organisation
) -> None:
    member = organisation[Role.CASEWORKER]
    code = member.otp()
    assert login(staff_client, member, otp=code).status_code == 200
    assert login(staff_client, member, otp=code).status_code == 401


def test_codes_one_step_either_side_are_accepted_but_not_two(
    db_session: Session, organisation: Organisation, settings: Settings, server_secrets: ServerSecrets
) -> None:
    member = organisation[Role.CASEWORKER]
    now = dt.datetime.now(dt.UTC)

    def attempt(steps: int) -> bool:
        return (
            authenticate(
                db_session,
                username=member.username,
                password=member.password,
                otp=member.otp(steps),
                settings=settings,
                totp_key=server_secrets.totp_key,
                key_integrity_key=server_secrets.key_integrity_key,
                now=now,
            )
            is not None
        )

    assert not attempt(-3)
    assert not attempt(2)
    assert attempt(1)
    assert not attempt(0)  # an older step than the last accepted one


def test_unknown_users_cost_an_argon2_run_like_known_ones(
    db_session: Session,
    organisation: Organisation,
    settings: Settings,
    server_secrets: ServerSecrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.crypto import kdf

    calls: list[bytes] = []
    real = kdf.derive_login_keys

    def counting(password: str, salt: bytes, params: object) -> object:
        calls.append(salt)
        return real(password, salt, params)  # type: ignore[arg-type]

    monkeypatch.setattr(kdf, "derive_login_keys", counting)
    for username in ("nobody-at-all", organisation[Role.ADMIN].username):
        assert (
            authenticate(
                db_session,
                username=username,
                password="wrong",
                otp="123456",
                settings=settings,
                totp_key=server_secrets.totp_key,
                key_integrity_key=server_secrets.key_integrity_key,
            )
            is None
        )
    assert len(calls) == 2


def test_the_session_reaches_protected_routes_and_logout_destroys_it(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    assert login(staff_client, organisation[Role.AUDITOR]).status_code == 200
    assert staff_client.get("/api/v1/auth/session").json()["role"] == "auditor"
    assert staff_client.post("/api/v1/auth/logout").status_code == 204
    assert staff_client.get("/api/v1/auth/session").status_code == 401
    assert db_session.scalars(select(StaffSession)).all() == []


def test_each_login_gets_a_new_session(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.LEAD]
    first = login(staff_client, member).cookies[SECURE_COOKIE_NAME]
    time.sleep(0)
    second = login(staff_client, member, otp=member.otp(1)).cookies[SECURE_COOKIE_NAME]
    assert first != second
    assert len(db_session.scalars(select(StaffSession)).all()) == 2


@pytest.mark.parametrize(
    ("idle", "age", "alive"),
    [
        (dt.timedelta(minutes=29), dt.timedelta(hours=1), True),
        (dt.timedelta(minutes=31), dt.timedelta(hours=1), False),
        (dt.timedelta(minutes=1), dt.timedelta(hours=8, minutes=1), False),
    ],
)
def test_sessions_expire_after_idle_and_absolute_timeouts(
    db_session: Session,
    organisation: Organisation,
    settings: Settings,
    server_secrets: ServerSecrets,
    idle: dt.timedelta,
    age: dt.timedelta,
    alive: bool,
) -> None:
    member = organisation[Role.CASEWORKER]
    outcome = authenticate(
        db_session,
        username=member.username,
        password=member.password,
        otp=member.otp(),
        settings=settings,
        totp_key=server_secrets.totp_key,
        key_integrity_key=server_secrets.key_integrity_key,
    )
    assert outcome is not None
    start = dt.datetime.now(dt.UTC)
    cookie = start_session(db_session, *outcome, integrity_key=server_secrets.key_integrity_key, now=start)
    row = db_session.scalars(select(StaffSession)).one()
    row.last_seen_at = start + age - idle
    now = start + age
    outcome = resume_session(
        db_session, cookie, settings, integrity_key=server_secrets.key_integrity_key, now=now
    )
    assert isinstance(outcome, Principal if alive else ExpiredSession)


def test_an_expired_session_is_destroyed_not_just_refused(
    data_dir: Path, committed_database_url: str | None
) -> None:
    settings = Settings(
        data_dir=data_dir,
        argon2=CHEAP_ARGON2,
        database_url=SecretStr(committed_database_url) if committed_database_url else None,
    )
    database = Database.from_settings(settings)
    organisation = init_organisation(settings, database)
    server_secrets = load_server_secrets(settings.secrets_dir)
    with database.transaction() as session:
        member = make_member(
            session,
            settings,
            server_secrets,
            Role.LEAD,
            grant=IntakeKeyFixture(
                organisation.intake_key, organisation.intake_private, organisation.recovery_key
            ),
        )
    with TestClient(create_staff_app(settings, database=database), base_url="https://staff") as client:
        assert login(client, member).status_code == 200
        with database.transaction() as session:
            row = session.scalars(select(StaffSession)).one()
            row.last_seen_at = row.last_seen_at - dt.timedelta(minutes=settings.session_idle_minutes + 1)
        assert client.get("/api/v1/auth/session").status_code == 401
    with database.transaction() as session:
        assert session.scalars(select(StaffSession)).all() == []
    database.engine.dispose()


def test_deactivated_account_loses_its_session(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    member = organisation[Role.CASEWORKER]
    assert login(staff_client, member).status_code == 200
    db_session.get_one(StaffAccount, member.account.id).is_active = False
    db_session.commit()
    assert staff_client.get("/api/v1/auth/session").status_code == 401


def test_a_tampered_cookie_is_refused(staff_client: TestClient, organisation: Organisation) -> None:
    assert login(staff_client, organisation[Role.LEAD]).status_code == 200
    value = staff_client.cookies[SECURE_COOKIE_NAME]
    tampered = value[:-2] + ("AA" if value[-2:] != "AA" else "BB")
    staff_client.cookies.clear()
    assert (
        staff_client.get(
            "/api/v1/auth/session", headers={"cookie": f"{SECURE_COOKIE_NAME}={tampered}"}
        ).status_code
        == 401
    )
    assert (
        staff_client.get(
            "/api/v1/auth/session", headers={"cookie": f"{SECURE_COOKIE_NAME}={value}"}
        ).status_code
        == 200
    )


def test_plain_http_cookie_only_in_development_on_loopback(
    settings: Settings, database: Database, organisation: Organisation
) -> None:
    development = settings.model_copy(update={"environment": Environment.DEVELOPMENT})
    cases = [
        (development, "http://127.0.0.1", LOOPBACK_COOKIE_NAME),
        (development, "https://127.0.0.1", SECURE_COOKIE_NAME),
        (development, "http://daylight.example", SECURE_COOKIE_NAME),
    ]
    member = organisation[Role.LEAD]
    # Distinct TOTP steps (-1, 0, 1): a code is accepted once only.
    for step, (app_settings, base_url, expected) in enumerate(cases, start=-1):
        # TestClient reports the listening address from base_url's host.
        with TestClient(create_staff_app(app_settings, database=database), base_url=base_url) as client:
            response = login(client, member, otp=member.otp(step))
        assert response.status_code == 200
        names = [h.split("=")[0] for h in response.headers.get_list("set-cookie")]
        assert names == [expected], base_url


def test_production_never_sets_a_plain_http_cookie(settings: Settings) -> None:
    from starlette.requests import Request

    from app.auth.deps import session_cookie

    scope = {
        "type": "http",
        "scheme": "http",
        "server": ("127.0.0.1", 8001),
        "path": "/",
        "headers": [],
        "query_string": b"",
    }
    assert session_cookie(Request(scope), settings) == (SECURE_COOKIE_NAME, True)
    development = settings.model_copy(update={"environment": Environment.DEVELOPMENT})
    assert session_cookie(Request(scope), development) == (LOOPBACK_COOKIE_NAME, False)
    public = {**scope, "server": ("203.0.113.5", 8001)}
    assert session_cookie(Request(public), development) == (SECURE_COOKIE_NAME, True)


def test_a_non_ascii_one_time_code_is_a_plain_401(
    staff_client: TestClient, organisation: Organisation
) -> None:
    response = login(staff_client, organisation[Role.LEAD], otp="１２３４５６")
    assert response.status_code == 401
    assert response.json() == INVALID
