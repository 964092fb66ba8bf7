"""`daylight accounts invite` on both databases (issue 22): the command line creates the first
admin; any other account only with --force, a role and a reason, recorded as the operator's; and
usernames are the staff app's."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role, StaffAccount
from app.auth.schemas import CreateAccountRequest
from app.entrypoints import cli
from app.entrypoints.cli.accounts import MAX_REASON_CHARS
from app.entrypoints.organisation import init_organisation
from app.kit.config import load_settings
from app.kit.db import Database
from tests.conftest import CHEAP_ARGON2

UI_USERNAME_RULE = "3 to 64 characters: lowercase letters, digits, '.', '_' or '-'"


@dataclass
class Org:
    data_dir: Path
    database: Database


@pytest.fixture
def org(data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Org]:
    """As `daylight init` leaves an organisation: no account at all."""
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    settings = load_settings(data_dir / "org").model_copy(update={"argon2": CHEAP_ARGON2})
    database = Database.from_settings(settings)
    init_organisation(settings, database)
    try:
        yield Org(data_dir / "org", database)
    finally:
        database.engine.dispose()


def invite(org: Org, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["accounts", "invite", "--data-dir", str(org.data_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


def accounts(session: Session) -> dict[str, Role]:
    return {a.username: Role(a.role) for a in session.scalars(select(StaffAccount))}


def created_event(session: Session, username: str) -> AuditEvent:
    account_id = session.scalars(select(StaffAccount.id).where(StaffAccount.username == username)).one()
    return session.scalars(
        select(AuditEvent).where(
            AuditEvent.action == "account.create", AuditEvent.object_id == str(account_id)
        )
    ).one()


def test_the_first_admin_needs_no_flags_and_a_second_is_refused(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = invite(org, capsys, "--username", "first.admin")
    assert code == 0, err
    assert out.startswith("Created first.admin (admin).")
    assert re.search(r"/link/[A-Za-z0-9_-]{43}\b", out)
    with org.database.transaction() as session:
        assert accounts(session) == {"first.admin": Role.ADMIN}
        event = created_event(session, "first.admin")
        assert (event.actor_id, event.role) == (None, "system")
        assert json.loads(event.details) == {"by": "operator", "first_admin": True, "role": "admin"}

    # An admin exists (activated or not): the staff app invites everyone else.
    for role in ([], ["--role", "admin"], ["--role", "lead"]):
        code, out, err = invite(org, capsys, "--username", "second.admin", *role)
        assert (code, out) == (1, "")
        assert "has an admin already (first.admin)" in err or "first admin only" in err
        assert "Nothing changed." in err
    code, _, err = invite(org, capsys, "--username", "second.admin")
    assert (
        "daylight: this organisation has an admin already (first.admin): an admin invites members in the "
        "staff app (Accounts), where the invitation is recorded as theirs. If no admin can (locked out, "
        "gone), add --force --role ROLE --reason TEXT; the reason is recorded in the audit log. "
        "Nothing changed.\n"
    ) in err
    with org.database.transaction() as session:
        assert accounts(session) == {"first.admin": Role.ADMIN}


def test_without_force_only_an_admin_is_created(org: Org, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = invite(org, capsys, "--username", "first.lead", "--role", "lead")
    assert (code, out) == (1, "")
    assert (
        "daylight: the command line invites the first admin only; the admin invites leads, caseworkers "
        "and auditors in the staff app (Accounts). Nothing changed.\n"
    ) in err
    with org.database.transaction() as session:
        assert accounts(session) == {}


def test_a_deactivated_admin_leaves_room_for_a_first_admin_again(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invite(org, capsys, "--username", "gone.admin")[0] == 0
    with org.database.transaction() as session:
        session.execute(update(StaffAccount).values(is_active=False))
    assert invite(org, capsys, "--username", "new.admin")[0] == 0


def test_a_forced_invitation_records_the_operator_and_the_reason(
    org: Org, capsys: pytest.CaptureFixture[str]
) -> None:
    assert invite(org, capsys, "--username", "first.admin")[0] == 0
    reason = "All admins locked out;\nticket 41\x00 " + "x" * 400
    code, out, err = invite(
        org, capsys, "--username", "rescue.admin", "--role", "admin", "--force", "--reason", reason
    )
    assert code == 0, err
    assert out.startswith("Created rescue.admin (admin).")
    code, out, err = invite(
        org, capsys, "--username", "first.lead", "--role", "lead", "--force", "--reason", "no admin reachable"
    )
    assert code == 0, err
    with org.database.transaction() as session:
        assert accounts(session) == {
            "first.admin": Role.ADMIN,
            "rescue.admin": Role.ADMIN,
            "first.lead": Role.LEAD,
        }
        lead_event = created_event(session, "first.lead")
        assert (lead_event.actor_id, lead_event.actor, lead_event.role) == (None, None, "system")
        assert json.loads(lead_event.details) == {
            "by": "operator",
            "reason": "no admin reachable",
            "role": "lead",
        }
        # One line, bounded, no control characters; and never the activation link.
        recorded = json.loads(created_event(session, "rescue.admin").details)["reason"]
        assert recorded.startswith("All admins locked out; ticket 41 xxx")
        assert len(recorded) == MAX_REASON_CHARS
        assert recorded.endswith("…")
        details = "".join(session.scalars(select(AuditEvent.details)))
        assert "/link/" not in details


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--force", "--reason", "why"], "--force needs --role ROLE and --reason TEXT"),
        (["--force", "--role", "lead"], "--force needs --role ROLE and --reason TEXT"),
        (["--force", "--role", "lead", "--reason", " \n\t"], "--force needs --role ROLE and --reason TEXT"),
        (["--reason", "why"], "--reason goes with --force"),
    ],
)
def test_force_needs_a_role_and_a_reason(
    org: Org, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = invite(org, capsys, "--username", "some.one", *args)
    assert (code, out) == (2, "")
    assert f"daylight accounts invite: error: {message}" in err
    with org.database.transaction() as session:
        assert accounts(session) == {}


@pytest.mark.parametrize("username", ["x1", "Upper.Case", "with space", "dash.last-", "a" * 65, "tab\there"])
def test_usernames_the_staff_app_refuses_are_refused_with_its_message(
    org: Org, capsys: pytest.CaptureFixture[str], username: str
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["accounts", "invite", "--data-dir", str(org.data_dir), "--username", username])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --username: {UI_USERNAME_RULE}" in err
    # The message the staff app's form and the API give for the same name.
    with pytest.raises(ValidationError) as ui:
        CreateAccountRequest.model_validate({"username": username, "role": "admin"})
    assert UI_USERNAME_RULE in str(ui.value)
    with org.database.transaction() as session:
        assert accounts(session) == {}
