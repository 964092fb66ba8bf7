"""At most ``argon2_max_concurrent`` Argon2id runs at once per process (issue 18): a login that
finds every turn taken waits ``argon2_wait_seconds``, then gets 503 with Retry-After, and
nothing about the account changes."""

from __future__ import annotations

import ast
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth import password_keys
from app.auth.models import PASSWORD_FORM_NFC, Role, StaffAccount, StaffSession
from app.auth.password_keys import (
    DerivationGate,
    TooManyLogins,
    configure_derivation_gate,
    derivation_gate,
    derivation_limit,
    password_matches,
    spend_dummy_runs,
    usable_cores,
    wrap_under_password,
)
from app.crypto import kdf, sealing
from app.entrypoints.apps import create_staff_app
from app.kit.config import Environment, Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import StaffMember, login, make_member
from tests.auth.test_password_normalisation import MIXED, member_with
from tests.conftest import CHEAP_ARGON2, Organisation

APP_DIR = Path(__file__).resolve().parents[2] / "app"
BUSY = {"error": "busy", "detail": "Too many logins at once. Try again in a moment."}
# Typed decomposed: its NFC form differs, so every check of it is two runs.
TWO_FORMS = unicodedata.normalize("NFD", "Crème brûlée à la carte")
assert len(password_keys.typed_forms(TWO_FORMS)) == 2
assert len(password_keys.typed_forms(MIXED)) == 3


@pytest.fixture(autouse=True)
def own_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an unconfigured process gate, and leaves the one it found."""
    monkeypatch.setattr(password_keys, "_process_gate", None)


def gated(settings: Settings, *, limit: int, wait: float) -> Settings:
    return Settings(
        data_dir=settings.data_dir,
        argon2=CHEAP_ARGON2,
        environment=Environment.PRODUCTION,
        argon2_max_concurrent=limit,
        argon2_wait_seconds=wait,
    )


class CountingDerive:
    """Stands in for `kdf.derive_login_keys`: counts the runs in flight and their peak, and holds
    the runs of one chosen thread until released."""

    def __init__(self, real: Callable[..., kdf.LoginKeys], *, delay: float = 0.0) -> None:
        self._real = real
        self._delay = delay
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self.held_thread: int | None = None
        self.holding = threading.Event()
        self.release = threading.Event()

    def __call__(self, password: str, salt: bytes, params: kdf.Argon2Parameters) -> kdf.LoginKeys:
        with self._lock:
            self.in_flight += 1
            self.calls += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if threading.get_ident() == self.held_thread:
                self.holding.set()
                assert self.release.wait(30)
            time.sleep(self._delay)
            return self._real(password, salt, params)
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture
def derive(monkeypatch: pytest.MonkeyPatch) -> CountingDerive:
    counting = CountingDerive(kdf.derive_login_keys)
    monkeypatch.setattr(kdf, "derive_login_keys", counting)
    return counting


@contextmanager
def one_check_in_flight(derive: CountingDerive, settings: Settings) -> Iterator[None]:
    """A password check in another thread, stopped in the middle of its Argon2id run (so holding
    its turn of the gate) until the block ends."""

    def check() -> None:
        derive.held_thread = threading.get_ident()
        spend_dummy_runs("someone else's password", settings)

    holder = threading.Thread(target=check)
    holder.start()
    try:
        assert derive.holding.wait(10)
        yield
    finally:
        derive.release.set()
        holder.join(10)
        assert not holder.is_alive()


def account_with_password(password: str, settings: Settings) -> StaffAccount:
    account = StaffAccount(id=uuid.uuid4())
    wrap_under_password(account, password, sealing.generate_private_key(), settings)
    return account


# Settings


def test_the_cap_defaults_to_the_cores_and_both_settings_are_validated(data_dir: Path) -> None:
    defaults = Settings(data_dir=data_dir, argon2=CHEAP_ARGON2)
    assert defaults.argon2_max_concurrent is None
    assert derivation_limit(defaults) == usable_cores() >= 1
    assert defaults.argon2_wait_seconds == 2.0
    assert derivation_limit(Settings(data_dir=data_dir, argon2=CHEAP_ARGON2, argon2_max_concurrent=3)) == 3
    for wrong in ({"argon2_max_concurrent": 0}, {"argon2_wait_seconds": -0.5}):
        with pytest.raises(ValidationError):
            Settings(data_dir=data_dir, argon2=CHEAP_ARGON2, **wrong)


def test_the_process_gate_is_sized_from_settings_and_shared(settings: Settings) -> None:
    unconfigured = derivation_gate()
    assert (unconfigured.limit, unconfigured.wait_seconds) == (usable_cores(), 2.0)
    gate = configure_derivation_gate(gated(settings, limit=3, wait=0.5))
    assert (gate.limit, gate.wait_seconds) == (3, 0.5)
    assert derivation_gate() is gate
    # Built again with the same settings (a second app in the process): the same gate.
    assert configure_derivation_gate(gated(settings, limit=3, wait=0.5)) is gate
    assert configure_derivation_gate(gated(settings, limit=1, wait=0.5)) is not gate
    with pytest.raises(ValueError, match="limit"):
        DerivationGate(0, 1.0)


# The gate around every run


def test_argon2id_is_called_only_from_the_gated_helper() -> None:
    callers = []
    for path in APP_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                called = node.func if isinstance(node, ast.Call) else None
                name = getattr(called, "attr", None) or getattr(called, "id", None)
                if name in {"derive_login_keys", "hash_secret_raw"}:
                    callers.append((path.relative_to(APP_DIR).as_posix(), function.name, name))
    assert sorted(callers) == [
        ("auth/password_keys.py", "_derive", "derive_login_keys"),
        ("crypto/kdf.py", "derive_login_keys", "hash_secret_raw"),
    ]


def test_every_kind_of_check_and_wrap_waits_for_a_turn(settings: Settings, derive: CountingDerive) -> None:
    configure_derivation_gate(gated(settings, limit=1, wait=0))
    nfc_account = account_with_password(TWO_FORMS, settings)
    legacy_account = account_with_password(MIXED, settings)
    legacy_account.password_form = None
    derive.calls = 0
    attempts: list[Callable[[], object]] = [
        lambda: password_matches(nfc_account, TWO_FORMS),
        lambda: password_matches(legacy_account, MIXED),
        lambda: spend_dummy_runs(MIXED, settings),
        lambda: wrap_under_password(nfc_account, "a new password", sealing.generate_private_key(), settings),
    ]
    with one_check_in_flight(derive, settings):
        for attempt in attempts:
            with pytest.raises(TooManyLogins):
                attempt()
        assert derive.calls == 1  # the holder's: none of the refused ones ran
    # The turns refused were not lost: each kind runs again once the holder is done.
    assert password_matches(nfc_account, TWO_FORMS) is not None
    assert password_matches(legacy_account, MIXED) is not None


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_runs_in_flight_never_exceed_the_cap(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    configure_derivation_gate(gated(settings, limit=limit, wait=30))
    nfc_account = account_with_password(TWO_FORMS, settings)
    legacy_account = account_with_password(MIXED, settings)
    legacy_account.password_form = None
    slow = CountingDerive(kdf.derive_login_keys, delay=0.01)
    monkeypatch.setattr(kdf, "derive_login_keys", slow)
    checks: list[Callable[[], object]] = [
        lambda: password_matches(nfc_account, TWO_FORMS),  # two runs
        lambda: password_matches(legacy_account, MIXED),  # three runs
        lambda: spend_dummy_runs(MIXED, settings),  # three runs
        lambda: password_matches(nfc_account, "wrong"),  # one run
    ]
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def worker(index: int) -> None:
        start.wait()
        try:
            for _ in range(3):
                checks[index % len(checks)]()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert slow.calls == 3 * 2 * (2 + 3 + 3 + 1)
    assert slow.in_flight == 0
    # Eight threads with 54 runs between them keep every turn busy, and never one more.
    assert slow.peak == limit


# Through the staff login


def busy_client(settings: Settings, database: Database) -> TestClient:
    return TestClient(
        create_staff_app(settings, database=database),
        base_url="https://testserver",
        raise_server_exceptions=False,
    )


def form_login(client: TestClient, member: StaffMember, *, password: str | None = None) -> Response:
    """The login form as a browser posts it: with the token its page carries, if it has one."""
    token = re.search(r'name="login_token" value="([^"]*)"', client.get("/login").text)
    return client.post(
        "/login",
        data={
            "username": member.username,
            "password": member.password if password is None else password,
            "otp": member.otp(),
            **({"login_token": token.group(1)} if token else {}),
        },
        follow_redirects=False,
    )


def account_state(db_session: Session, member: StaffMember) -> tuple[object, ...]:
    db_session.expire_all()
    account = db_session.get_one(StaffAccount, member.account.id)
    return (
        account.failed_logins,
        account.locked_until,
        account.totp_last_step,
        account.login_verifier,
        db_session.scalar(
            select(func.count()).select_from(StaffSession).where(StaffSession.account_id == account.id)
        ),
        db_session.scalar(select(func.max(AuditEvent.seq))),
    )


def assert_busy(response: Response, settings: Settings, *, page: bool) -> None:
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(settings.retry_after_seconds)
    assert "set-cookie" not in response.headers
    if page:
        assert response.headers["content-type"].startswith("text/html")
        assert "Too many logins at once. Try again in a moment." in response.text
    else:
        assert response.json() == BUSY


@pytest.mark.parametrize("via", ["api", "form"])
def test_a_login_that_finds_every_turn_taken_gets_503_and_changes_nothing(
    settings: Settings,
    database: Database,
    organisation: Organisation,
    db_session: Session,
    derive: CountingDerive,
    via: str,
) -> None:
    busy = gated(settings, limit=1, wait=0)
    configure_derivation_gate(busy)
    member = organisation[Role.CASEWORKER]
    with busy_client(busy, database) as client:

        def send(member: StaffMember, *, password: str | None = None) -> Response:
            if via == "api":
                return login(client, member, password=password)
            return form_login(client, member, password=password)

        before = account_state(db_session, member)
        with one_check_in_flight(derive, busy):
            wrong = send(member, password="not the password")
            right = send(member)
            assert derive.calls == 1  # neither login ran Argon2id
        assert_busy(wrong, busy, page=via == "form")
        assert_busy(right, busy, page=via == "form")
        # No failed login counted (no password was checked), the one-time code not used up, no
        # session, no audit event: the refusal rolled back whatever the login had begun.
        assert account_state(db_session, member) == before
        # The turn is free again: the same code logs in.
        assert send(member).status_code == (200 if via == "api" else 303)


@pytest.mark.parametrize("via", ["api", "form"])
def test_a_login_waits_for_a_turn_then_succeeds(
    settings: Settings,
    database: Database,
    organisation: Organisation,
    derive: CountingDerive,
    via: str,
) -> None:
    patient = gated(settings, limit=1, wait=10)
    configure_derivation_gate(patient)
    member = organisation[Role.LEAD]
    with busy_client(patient, database) as client, one_check_in_flight(derive, patient):
        threading.Timer(0.3, derive.release.set).start()
        started = time.monotonic()
        response = login(client, member) if via == "api" else form_login(client, member)
        waited = time.monotonic() - started
    assert response.status_code == (200 if via == "api" else 303)
    assert waited >= 0.25


class SecondTurnRefused(DerivationGate):
    """Gives the first turn, refuses the next: a login whose check passed, and whose re-wrap then
    finds the gate full."""

    def __init__(self) -> None:
        super().__init__(1, 0)
        self.turns = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        self.turns += 1
        if self.turns > 1:
            raise TooManyLogins
        with super().turn():
            yield


def test_a_rewrap_that_finds_the_gate_full_is_left_for_the_next_login(
    settings: Settings,
    server_secrets: ServerSecrets,
    database: Database,
    organisation: Organisation,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = member_with(db_session, settings, server_secrets, organisation, MIXED, legacy=True)
    db_session.commit()
    gate = SecondTurnRefused()
    with busy_client(settings, database) as client:
        monkeypatch.setattr(password_keys, "_process_gate", gate)  # after the app sized its own
        # The password and the code were accepted: the login is not refused for an upgrade.
        assert login(client, member).status_code == 200
        assert gate.turns == 2
        db_session.expire_all()
        assert db_session.get_one(StaffAccount, member.account.id).password_form is None
        monkeypatch.setattr(password_keys, "_process_gate", None)
        assert login(client, member, otp=member.otp(steps_ahead=1)).status_code == 200
    db_session.expire_all()
    assert db_session.get_one(StaffAccount, member.account.id).password_form == PASSWORD_FORM_NFC


def test_a_new_members_key_pair_is_derived_before_its_event_is_appended(
    settings: Settings, server_secrets: ServerSecrets, db_session: Session, derive: CountingDerive
) -> None:
    """A member made while the gate is full is refused before anything is written."""
    configure_derivation_gate(gated(settings, limit=1, wait=0))
    last_event = db_session.scalar(select(func.max(AuditEvent.seq)))
    with one_check_in_flight(derive, settings), pytest.raises(TooManyLogins):
        make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    assert db_session.scalar(select(func.max(AuditEvent.seq))) == last_event
