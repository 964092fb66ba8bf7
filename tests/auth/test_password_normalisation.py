"""Passwords are one password whatever Unicode form a device sends: Argon2id is given the NFC
form, and accounts whose verifier predates that move to it at login with the same key pair."""

from __future__ import annotations

import datetime as dt
import secrets
import unicodedata

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.credentials import authenticate, create_account
from app.auth.models import PASSWORD_FORM_NFC, PERSONAL_PRIVATE_KEY, Role, StaffAccount, StaffSession
from app.auth.password_keys import (
    argon2_parameters,
    password_matches,
    rewrap_personal_key,
    typed_forms,
    unwrap_personal_key,
)
from app.auth.second_factor import new_totp_secret
from app.crypto import kdf, sealing
from app.custody.service import unlock_granted_keys
from app.keys.grants import grant_intake_key
from app.kit.config import Argon2Cost, Settings
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, login
from tests.auth.test_accounts import activate, as_admin, invite, login_as
from tests.conftest import CHEAP_ARGON2, Organisation
from tests.intake.factories import make_tip

NFC = unicodedata.normalize("NFC", "Déjà vu, café crème 2026")
NFD = unicodedata.normalize("NFD", NFC)
# Neither form: "é" composed, "è" decomposed (a device may send such a mixture).
MIXED = NFC.replace("è", "e\u0300")
WRONG = ("Deja vu, cafe creme 2026", NFC + " ", NFD[:-1])

assert len(NFD) > len(NFC)
assert MIXED not in (NFC, NFD)
assert unicodedata.normalize("NFC", MIXED) == NFC


def wrap_the_old_way(
    account: StaffAccount, password: str, personal: sealing.PrivateKey, settings: Settings
) -> None:
    """What `wrap_under_password` did before NFC: Argon2id over the string as typed, no form."""
    salt = kdf.new_salt()
    keys = kdf.derive_login_keys(password, salt, argon2_parameters(settings))
    account.password_salt = salt
    account.login_verifier = keys.verifier
    account.wrapped_private_key = PERSONAL_PRIVATE_KEY.seal(
        keys.key_encryption_key, personal.raw, row_id=str(account.id)
    )
    account.password_form = None


def member_with(
    session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
    organisation: Organisation,
    password: str,
    *,
    legacy: bool = False,
) -> StaffMember:
    """A caseworker holding the intake key, whose password is ``password`` as typed at set time;
    ``legacy``: its verifier derived the way it was before NFC."""
    username = f"accented-{secrets.token_hex(3)}"
    totp_secret = new_totp_secret()
    account, personal = create_account(
        session,
        username=username,
        role=Role.CASEWORKER,
        password=password,
        totp_secret=totp_secret,
        settings=settings,
        server_secrets=server_secrets,
    )
    if legacy:
        wrap_the_old_way(account, password, personal, settings)
    grant_intake_key(
        session,
        intake_key=organisation.intake.key,
        intake_private=organisation.intake.private,
        grantee=account,
        granted_by_id=None,
        key_integrity_key=server_secrets.key_integrity_key,
    )
    session.commit()
    return StaffMember(account=account, username=username, password=password, totp_secret=totp_secret)


def stored(session: Session, member: StaffMember) -> StaffAccount:
    session.expire_all()
    return session.get_one(StaffAccount, member.account.id)


def opens_the_grant(
    session: Session,
    account: StaffAccount,
    password: str,
    organisation: Organisation,
    server_secrets: ServerSecrets,
) -> bool:
    """Whether ``password`` unwraps the account's personal key and that key opens its grant."""
    login_keys = password_matches(account, password)
    assert login_keys is not None
    personal = unwrap_personal_key(account, login_keys)
    assert personal.public_key().raw == account.public_key
    granted = unlock_granted_keys(
        session, account.id, personal, key_integrity_key=server_secrets.key_integrity_key
    )
    return granted[organisation.intake.key.version].raw == organisation.intake.private.raw


@pytest.mark.parametrize(
    ("set_as", "typed"), [(NFC, NFD), (NFD, NFC), (MIXED, NFD)], ids=["nfc", "nfd", "mixed"]
)
def test_a_password_set_in_one_normal_form_logs_in_from_another(
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
    set_as: str,
    typed: str,
) -> None:
    member = member_with(db_session, settings, server_secrets, organisation, set_as)
    assert stored(db_session, member).password_form == PASSWORD_FORM_NFC
    tip_id, _ = make_tip(db_session, server_secrets, narrative="read from any device")
    db_session.commit()

    response = login(staff_client, member, password=typed, otp=member.otp(-1))
    assert response.status_code == 200, response.text
    assert response.json()["holds_intake_key"] is True
    assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["narrative"] == "read from any device"
    staff_client.cookies.clear()
    assert login(staff_client, member, password=set_as, otp=member.otp(0)).status_code == 200
    staff_client.cookies.clear()
    assert login(staff_client, member, password=MIXED, otp=member.otp(1)).status_code == 200


@pytest.mark.parametrize("typed", [NFD, NFC, MIXED], ids=["nfd", "nfc", "mixed"])
def test_a_legacy_account_logs_in_keeps_its_key_pair_and_moves_to_nfc(
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
    typed: str,
) -> None:
    # Set from a device that sent NFD, before passwords were normalised.
    member = member_with(db_session, settings, server_secrets, organisation, NFD, legacy=True)
    before = stored(db_session, member)
    assert before.password_form is None
    public_key, salt, wrapped = before.public_key, before.password_salt, before.wrapped_private_key
    tip_id, _ = make_tip(db_session, server_secrets, narrative="still readable after the move")
    db_session.commit()

    response = login(staff_client, member, password=typed, otp=member.otp(-1))
    assert response.status_code == 200, response.text
    assert response.json()["holds_intake_key"] is True
    assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["narrative"] == "still readable after the move"

    after = stored(db_session, member)
    assert after.password_form == PASSWORD_FORM_NFC
    # The same key pair, wrapped again under a fresh salt: the grant sealed to it still opens.
    assert after.public_key == public_key
    assert after.password_salt != salt
    assert after.wrapped_private_key != wrapped
    verifier = after.login_verifier
    assert verifier == kdf.derive_login_keys(NFC, after.password_salt, argon2_parameters(settings)).verifier
    assert opens_the_grant(db_session, after, NFC, organisation, server_secrets)

    # From now on any form logs in, and nothing is wrapped again.
    for step, other in enumerate((NFC, NFD), start=0):
        staff_client.cookies.clear()
        assert login(staff_client, member, password=other, otp=member.otp(step)).status_code == 200
        assert staff_client.get(f"/api/v1/tips/{tip_id}").status_code == 200
    assert stored(db_session, member).login_verifier == verifier


def test_wrong_passwords_and_codes_fail_and_leave_a_legacy_account_as_it_was(
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    legacy = member_with(db_session, settings, server_secrets, organisation, NFD, legacy=True)
    current = member_with(db_session, settings, server_secrets, organisation, NFC)
    before = stored(db_session, legacy)
    salt, verifier, wrapped = before.password_salt, before.login_verifier, before.wrapped_private_key

    for member in (legacy, current):
        for wrong in WRONG:
            assert login(staff_client, member, password=wrong).status_code == 401
        # The right password with a wrong code is no login, and moves nothing.
        assert login(staff_client, member, password=NFC, otp="000000").status_code == 401
    after = stored(db_session, legacy)
    assert (after.password_form, after.password_salt, after.login_verifier) == (None, salt, verifier)
    assert after.wrapped_private_key == wrapped
    assert after.failed_logins == len(WRONG) + 1

    assert login(staff_client, legacy, password=NFC).status_code == 200
    assert stored(db_session, legacy).password_form == PASSWORD_FORM_NFC


@pytest.mark.parametrize(
    "typed", ["plain ascii password", NFC, NFD, MIXED], ids=["ascii", "nfc", "nfd", "mixed"]
)
def test_every_login_of_one_typed_password_costs_the_same_argon2_runs(
    db_session: Session,
    organisation: Organisation,
    settings: Settings,
    server_secrets: ServerSecrets,
    monkeypatch: pytest.MonkeyPatch,
    typed: str,
) -> None:
    """Unknown, legacy and current accounts: as many Argon2id runs as the typed string has
    forms, so the time taken tells neither which usernames exist nor which are legacy."""
    legacy = member_with(db_session, settings, server_secrets, organisation, NFD, legacy=True)
    current = member_with(db_session, settings, server_secrets, organisation, NFD)
    real = kdf.derive_login_keys
    runs: list[str] = []

    def counting(password: str, salt: bytes, params: kdf.Argon2Parameters) -> kdf.LoginKeys:
        runs.append(password)
        return real(password, salt, params)

    monkeypatch.setattr(kdf, "derive_login_keys", counting)
    counts = []
    for username in ("nobody-at-all", legacy.username, current.username):
        runs.clear()
        outcome = authenticate(
            db_session,
            username=username,
            password=typed,
            otp="000000",
            settings=settings,
            totp_key=server_secrets.totp_key,
            key_integrity_key=server_secrets.key_integrity_key,
        )
        assert outcome is None
        counts.append(len(runs))
    assert counts == [len(typed_forms(typed))] * 3
    assert len(typed_forms(typed)) == {"plain ascii password": 1, NFC: 2, NFD: 2, MIXED: 3}[typed]


def test_a_password_activated_in_nfd_logs_in_in_nfc(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    as_admin(staff_client, organisation)
    token = invite(staff_client, "accented.member", "caseworker")
    secret = activate(staff_client, token, password=NFD)
    account = db_session.scalars(select(StaffAccount).where(StaffAccount.username == "accented.member")).one()
    assert account.password_form == PASSWORD_FORM_NFC
    assert login_as(staff_client, "accented.member", NFC, secret, step=0) == 200
    assert login_as(staff_client, "accented.member", WRONG[0], secret, step=1) == 401


def test_step_up_and_password_change_take_either_form(
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    member = member_with(db_session, settings, server_secrets, organisation, NFC)
    tip_id, _ = make_tip(db_session, server_secrets, narrative="kept through the change")
    db_session.commit()
    assert login(staff_client, member, password=NFD, otp=member.otp(-1)).status_code == 200
    db_session.execute(
        update(StaffSession).values(reauthenticated_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6))
    )
    db_session.commit()
    assert staff_client.post("/api/v1/auth/step-up", json={"password": WRONG[0]}).status_code == 403
    assert staff_client.post("/api/v1/auth/step-up", json={"password": NFD}).status_code == 204

    new_nfd = unicodedata.normalize("NFD", "Öffne die Tür, Zoë")
    changed = staff_client.post(
        "/api/v1/auth/password", json={"current_password": NFD, "new_password": new_nfd}
    )
    assert changed.status_code == 204, changed.text
    staff_client.cookies.clear()
    assert login(staff_client, member, password=NFC, otp=member.otp(0)).status_code == 401
    new_nfc = unicodedata.normalize("NFC", new_nfd)
    assert login(staff_client, member, password=new_nfc, otp=member.otp(0)).status_code == 200
    assert staff_client.get(f"/api/v1/tips/{tip_id}").json()["narrative"] == "kept through the change"


def test_an_account_derived_at_a_lower_cost_is_derived_again_at_login(
    db_session: Session, organisation: Organisation, settings: Settings, server_secrets: ServerSecrets
) -> None:
    member = member_with(db_session, settings, server_secrets, organisation, NFC)
    public_key = member.account.public_key
    stronger = settings.model_copy(
        update={"argon2": Argon2Cost(time_cost=2, memory_cost_kib=16, allow_below_floor_for_tests=True)}
    )
    assert (CHEAP_ARGON2.time_cost, CHEAP_ARGON2.memory_cost_kib) == (1, 8)

    outcome = authenticate(
        db_session,
        username=member.username,
        password=NFD,
        otp=member.otp(),
        settings=stronger,
        totp_key=server_secrets.totp_key,
        key_integrity_key=server_secrets.key_integrity_key,
    )
    assert outcome is not None
    assert outcome[1].intake  # the grant opened
    account = stored(db_session, member)
    assert (account.argon2_time_cost, account.argon2_memory_cost_kib) == (2, 16)
    assert account.public_key == public_key
    assert opens_the_grant(db_session, account, NFD, organisation, server_secrets)


def test_a_rewrap_never_overwrites_a_password_changed_meanwhile(
    db_session: Session, organisation: Organisation, settings: Settings, server_secrets: ServerSecrets
) -> None:
    member = member_with(db_session, settings, server_secrets, organisation, NFD, legacy=True)
    account = stored(db_session, member)
    login_keys = password_matches(account, NFD)
    assert login_keys is not None
    personal = unwrap_personal_key(account, login_keys)
    # Another session changes the password between this login's check and its re-wrap.
    changed_verifier = secrets.token_bytes(32)
    db_session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id)
        .values(login_verifier=changed_verifier)
        .execution_options(synchronize_session=False)
    )
    assert rewrap_personal_key(db_session, account, NFD, personal, settings) is False
    after = stored(db_session, member)
    assert (after.login_verifier, after.password_form) == (changed_verifier, None)
