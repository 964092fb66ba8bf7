"""Key custody (DESIGN 4): who can unwrap the intake key, and with what."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.auth.models import PERSONAL_PRIVATE_KEY, Role, StaffAccount
from app.auth.password_keys import argon2_parameters
from app.crypto import DecryptionError, human_codes, kdf, sealing
from app.custody.models import IntakeKey, IntakeKeyGrant
from app.custody.service import recover_intake_key, unlock_granted_keys
from app.keys.grants import grant_intake_key
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from tests.auth.factories import make_member
from tests.custody.factories import make_intake_key


def test_the_recovery_key_opens_the_intake_key_and_nothing_else_does(
    db_session: Session, server_secrets: ServerSecrets
) -> None:
    intake = make_intake_key(db_session, server_secrets)
    assert recover_intake_key(intake.key, intake.recovery_key).raw == intake.private.raw
    typed_carelessly = intake.recovery_key.lower().replace("-", " ")
    assert recover_intake_key(intake.key, typed_carelessly).raw == intake.private.raw
    with pytest.raises(DecryptionError):
        recover_intake_key(intake.key, human_codes.random_code(160))
    with pytest.raises(ValueError, match="not a recovery key"):
        recover_intake_key(intake.key, "too short")


def test_a_grant_opens_only_with_its_members_personal_key(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets
) -> None:
    intake = make_intake_key(db_session, server_secrets)
    holder = make_member(db_session, settings, server_secrets, Role.LEAD, grant=intake)
    other = make_member(db_session, settings, server_secrets, Role.LEAD)

    def personal_key(account: StaffAccount, password: str) -> sealing.PrivateKey:
        keys = kdf.derive_login_keys(password, account.password_salt, argon2_parameters(settings))
        return sealing.PrivateKey(
            PERSONAL_PRIVATE_KEY.open(
                keys.key_encryption_key, account.wrapped_private_key, row_id=str(account.id)
            )
        )

    unlocked = unlock_granted_keys(
        db_session,
        holder.account.id,
        personal_key(holder.account, holder.password),
        key_integrity_key=server_secrets.key_integrity_key,
    )
    assert unlocked[intake.key.version].raw == intake.private.raw
    assert (
        unlock_granted_keys(
            db_session,
            other.account.id,
            personal_key(other.account, other.password),
            key_integrity_key=server_secrets.key_integrity_key,
        )
        == {}
    )
    with pytest.raises(DecryptionError):
        unlock_granted_keys(
            db_session,
            holder.account.id,
            personal_key(other.account, other.password),
            key_integrity_key=server_secrets.key_integrity_key,
        )
    with pytest.raises(DecryptionError):
        personal_key(holder.account, "not the password")


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR])
def test_admins_and_auditors_can_never_be_granted_the_intake_key(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, role: Role
) -> None:
    intake = make_intake_key(db_session, server_secrets)
    member = make_member(db_session, settings, server_secrets, role)
    with pytest.raises(ValueError, match="cannot hold the intake key"):
        grant_intake_key(
            db_session,
            intake_key=intake.key,
            intake_private=intake.private,
            grantee=member.account,
            granted_by_id=None,
            key_integrity_key=server_secrets.key_integrity_key,
        )


def test_init_prints_a_recovery_key_that_opens_the_stored_intake_key(tmp_path: Path) -> None:
    data_dir = tmp_path / "org"
    result = subprocess.run(
        [sys.executable, "-m", "app", "init", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    [recovery_key] = re.findall(r"(?:[0-9A-Z]{4}-){7}[0-9A-Z]{4}", result.stdout)
    assert oct((data_dir / "daylight.sqlite3").stat().st_mode & 0o777) == "0o600"
    for secret_file in (data_dir / "secrets").iterdir():
        assert secret_file.stat().st_mode & 0o077 == 0
    assert recovery_key.encode() not in b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())

    database = Database.from_settings(Settings(data_dir=data_dir))
    with database.transaction() as session:
        intake_key = session.get_one(IntakeKey, 1)
        assert recover_intake_key(intake_key, recovery_key).public_key().raw == intake_key.public_key
    database.engine.dispose()

    again = subprocess.run(
        [sys.executable, "-m", "app", "init", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_keys_recover_grants_the_intake_key_to_a_named_member(tmp_path: Path) -> None:
    """When no key holder is left, the recovery key grants the intake key again."""
    data_dir = tmp_path / "org"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DAYLIGHT_ARGON2__TIME_COST": "1",
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": "8",
    }
    created = subprocess.run(
        [sys.executable, "-m", "app", "demo", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert created.returncode == 0, created.stderr
    [recovery_key] = re.findall(r"(?:[0-9A-Z]{4}-){7}[0-9A-Z]{4}", created.stdout)

    settings = Settings(data_dir=data_dir)
    database = Database.from_settings(settings)
    with database.transaction() as session:
        lead = session.scalars(select(StaffAccount).where(StaffAccount.username == "demo-lead")).one()
        session.execute(delete(IntakeKeyGrant))  # every key holder gone
    database.engine.dispose()

    def recover(key: str, username: str = "demo-lead") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "app",
                "keys",
                "recover",
                "--data-dir",
                str(data_dir),
                "--username",
                username,
            ],
            input=key + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=env,
        )

    wrong = recover(human_codes.random_code(160))
    assert wrong.returncode == 1
    assert "did not open" in wrong.stderr
    assert recover(recovery_key, "demo-admin").returncode == 1  # an admin never holds the key
    assert recover(recovery_key, "nobody").returncode == 1
    done = recover(recovery_key.lower().replace("-", " "))
    assert done.returncode == 0, done.stderr

    database = Database.from_settings(settings)
    with database.transaction() as session:
        grants = session.scalars(select(IntakeKeyGrant)).all()
        assert [grant.account_id for grant in grants] == [lead.id]
    database.engine.dispose()


def test_the_first_admin_is_invited_from_the_command_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "org"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = [sys.executable, "-m", "app"]
    assert (
        subprocess.run(
            [*run, "init", "--data-dir", str(data_dir)],
            capture_output=True,
            check=False,
            timeout=120,
            env=env,
        ).returncode
        == 0
    )
    invite = [*run, "accounts", "invite", "--data-dir", str(data_dir), "--username", "first.admin"]
    invited = subprocess.run(invite, capture_output=True, text=True, check=False, timeout=120, env=env)
    assert invited.returncode == 0, invited.stderr
    assert re.search(r"/link/[A-Za-z0-9_-]{43}\b", invited.stdout)
    # The first admin only: a second is refused (tests/entrypoints/test_cli_invite.py has the rules).
    again = subprocess.run(invite, capture_output=True, text=True, check=False, timeout=120, env=env)
    assert again.returncode == 1
    assert "has an admin already (first.admin)" in again.stderr
    forced = [*invite, "--force", "--role", "admin", "--reason", "the same again"]
    taken = subprocess.run(forced, capture_output=True, text=True, check=False, timeout=120, env=env)
    assert taken.returncode == 1
    assert "taken" in taken.stderr
