"""`daylight keys grant-first` on both databases: after `init` nobody holds the intake key, and the
operator grants it to the first lead with the recovery key (typed, or one line of stdin) — only
to an activated lead whose key pair was confirmed, and only while nobody holds the key."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth import accounts
from app.auth.models import Role, StaffAccount
from app.auth.password_keys import password_matches, unwrap_personal_key
from app.crypto import human_codes
from app.custody.models import IntakeKeyGrant
from app.custody.service import unlock_granted_keys
from app.entrypoints import cli
from app.entrypoints.organisation import init_organisation
from app.kit.config import Settings, load_settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from tests.auth.factories import StaffMember, make_member
from tests.conftest import CHEAP_ARGON2


@dataclass
class Org:
    data_dir: Path
    settings: Settings
    database: Database
    secrets: ServerSecrets
    recovery_key: str
    lead: StaffMember
    caseworker: StaffMember
    admin: StaffMember


@pytest.fixture
def org(data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    """As `daylight init` leaves an organisation, with a lead, a caseworker and an admin who have
    activated and been confirmed: nobody holds the intake key."""
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    settings = load_settings(data_dir / "org").model_copy(update={"argon2": CHEAP_ARGON2})
    database = Database.from_settings(settings)
    created = init_organisation(settings, database)
    secrets = load_server_secrets(settings.secrets_dir)
    with database.transaction() as session:
        lead = make_member(session, settings, secrets, Role.LEAD, username="first.lead")
        caseworker = make_member(session, settings, secrets, Role.CASEWORKER, username="case.worker")
        admin = make_member(session, settings, secrets, Role.ADMIN, username="the.admin")
    try:
        yield Org(
            data_dir / "org", settings, database, secrets, created.recovery_key, lead, caseworker, admin
        )
    finally:
        database.engine.dispose()


def grant_first(
    org: Org,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    username: str,
    recovery_key: str | None = None,
) -> tuple[int, str, str, io.StringIO]:
    stdin = io.StringIO((org.recovery_key if recovery_key is None else recovery_key) + "\n")
    monkeypatch.setattr("sys.stdin", stdin)
    code = cli.main(["keys", "grant-first", "--data-dir", str(org.data_dir), "--username", username])
    out, err = capsys.readouterr()
    return code, out, err, stdin


def holders(session: Session) -> list[str]:
    return list(
        session.scalars(
            select(StaffAccount.username)
            .join(IntakeKeyGrant, IntakeKeyGrant.account_id == StaffAccount.id)
            .order_by(StaffAccount.username)
        )
    )


def first_grant_events(session: Session) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "key.grant_first")))


def test_the_first_lead_is_granted_the_key_and_told_what_comes_next(
    org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The recovery key as it may be typed: lower case, spaces for dashes.
    typed = org.recovery_key.lower().replace("-", " ")
    code, out, err, _ = grant_first(org, monkeypatch, capsys, "first.lead", typed)
    assert code == 0, err
    assert "Granted intake key version 1 to first.lead, the organisation's first key holder." in out
    assert "Next: first.lead logs out and in again" in out
    assert "Key grants page" in out
    assert org.recovery_key not in out + err
    with org.database.transaction() as session:
        assert holders(session) == ["first.lead"]
        [event] = first_grant_events(session)
        assert (event.actor_id, event.actor, event.role) == (None, None, "system")
        assert event.object_id == str(org.lead.account.id)
        assert json.loads(event.details) == {"by": "operator", "key_version": 1, "username": "first.lead"}
        # The lead's next login opens the key: the grant is sealed to their own key pair.
        account = session.get_one(StaffAccount, org.lead.account.id)
        login_keys = password_matches(account, org.lead.password)
        assert login_keys is not None
        unlocked = unlock_granted_keys(
            session,
            account.id,
            unwrap_personal_key(account, login_keys),
            key_integrity_key=org.secrets.key_integrity_key,
        )
        assert list(unlocked) == [1]
    # Everything the command recorded is signed and intact.
    assert cli.main(["audit", "verify", "--data-dir", str(org.data_dir)]) == 0

    # Once someone holds the key, a lead grants it: the command refuses, naming the holders.
    code, _, err, stdin = grant_first(org, monkeypatch, capsys, "case.worker")
    assert code == 1
    assert (
        "daylight: 1 member already holds the intake key (first.lead): a lead grants it in the staff app "
        "(Key grants); nothing changed." in err
    )
    assert stdin.tell() == 0  # refused before the recovery key was asked for
    with org.database.transaction() as session:
        assert holders(session) == ["first.lead"]
        assert len(first_grant_events(session)) == 1


@pytest.mark.parametrize(
    ("username", "message"),
    [
        (
            "case.worker",
            "daylight: case.worker is a caseworker: the first key holder is a lead (an admin invites one "
            "in the staff app, Accounts); nothing changed.",
        ),
        ("the.admin", "daylight: the.admin is an admin: the first key holder is a lead"),
        ("nobody", "daylight: no account nobody; nothing changed."),
    ],
)
def test_only_a_lead_can_be_the_first_key_holder(
    org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], username: str, message: str
) -> None:
    code, out, err, stdin = grant_first(org, monkeypatch, capsys, username)
    assert (code, out) == (1, "")
    assert message in err
    assert stdin.tell() == 0
    with org.database.transaction() as session:
        assert holders(session) == []
        assert first_grant_events(session) == []


def test_an_unconfirmed_lead_is_sent_to_accounts_confirm_first(
    org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with org.database.transaction() as session:
        session.execute(
            update(StaffAccount).where(StaffAccount.id == org.lead.account.id).values(confirmed_at=None)
        )
    code, _, err, stdin = grant_first(org, monkeypatch, capsys, "first.lead")
    assert code == 1
    assert "daylight: the key pair of first.lead has not been confirmed yet; nothing changed." in err
    assert "read out the key fingerprint shown on their account page" in err
    assert f"daylight accounts confirm first.lead --data-dir {org.data_dir} --fingerprint 'CODE'" in err
    assert stdin.tell() == 0
    with org.database.transaction() as session:
        assert holders(session) == []


def test_a_lead_who_has_not_activated_or_was_deactivated_is_refused(
    org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with org.database.transaction() as session:
        accounts.invite_account(
            session,
            username="new.lead",
            role=Role.LEAD,
            actor=audit.SYSTEM,
            server_secrets=org.secrets,
        )
        session.execute(
            update(StaffAccount).where(StaffAccount.id == org.lead.account.id).values(is_active=False)
        )
    code, _, err, _ = grant_first(org, monkeypatch, capsys, "new.lead")
    assert code == 1
    assert "daylight: new.lead has not activated their account yet" in err
    code, _, err, _ = grant_first(org, monkeypatch, capsys, "first.lead")
    assert code == 1
    assert "daylight: first.lead is deactivated; nothing changed." in err
    with org.database.transaction() as session:
        assert holders(session) == []


@pytest.mark.parametrize(
    ("recovery_key", "message"),
    [
        (None, "daylight: the recovery key did not open the intake key; nothing changed."),
        ("", "daylight: not a recovery key; nothing changed."),
    ],
)
def test_a_wrong_recovery_key_grants_nothing(
    org: Org,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recovery_key: str | None,
    message: str,
) -> None:
    other = human_codes.random_code(160) if recovery_key is None else recovery_key
    code, _, err, _ = grant_first(org, monkeypatch, capsys, "first.lead", other)
    assert code == 1
    assert message in err
    with org.database.transaction() as session:
        assert holders(session) == []
        assert first_grant_events(session) == []


def test_at_a_terminal_the_recovery_key_is_asked_for_without_echo_on_stderr(
    org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[tuple[str, object]] = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def getpass(prompt: str, stream: object = None) -> str:
        asked.append((prompt, stream))
        return org.recovery_key

    monkeypatch.setattr("sys.stdin", Terminal(""))
    monkeypatch.setattr("getpass.getpass", getpass)
    code = cli.main(["keys", "grant-first", "--data-dir", str(org.data_dir), "--username", "first.lead"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert asked == [("Recovery key (not shown): ", sys.stderr)]
    assert "Type the recovery key" in err
    assert org.recovery_key not in out + err


def test_the_recovery_key_is_never_an_argument(
    org: Org, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    for option in ("--recovery-key", "--recovery-key-file"):
        with pytest.raises(SystemExit) as refused:
            cli.main(
                [
                    "keys",
                    "grant-first",
                    "--data-dir",
                    str(org.data_dir),
                    "--username",
                    "first.lead",
                    option,
                    org.recovery_key,
                ]
            )
        assert refused.value.code == 2
    capsys.readouterr()
    with org.database.transaction() as session:
        assert holders(session) == []
