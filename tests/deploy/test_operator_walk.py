"""The operator's documented path (README, docs/deploy.md), walked with the installed wheel.

In a fresh venv holding only the built wheel, from an empty directory outside the repository,
with one settings file (`--env-file`, mode 0600) on PostgreSQL in production: `init` prints the
recovery key; `accounts invite` makes the first admin; under `daylight serve` the admin activates
through the staff API and invites the first lead, who activates and reads their key fingerprint
off their own account page; the operator confirms it (`accounts confirm`) and grants the lead the
intake key with the recovery key on stdin (`keys grant-first`); a tip sent to the intake is read
back by the lead. Then, served no more: `doctor` prints no FAIL, an encrypted backup (to a key
pair from `backup-keygen`), once the deployment's database is lost, restores into a new data dir
and an empty database (a settings file of its own) with the backup key on stdin, and the restored
audit log verifies.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import pyotp
import pytest

from tests.conftest import create_postgres_schema, drop_postgres_schema
from tests.deploy.conftest import COMMAND_SECONDS, Installed, operator_env
from tests.deploy.test_wheel_install import both_healthy, group_alive
from tests.support.ports import free_ports

pytestmark = pytest.mark.serve

SERVE_START_SECONDS = 60
STOP_SECONDS = 30
HTTP_SECONDS = 30
AUDIT_LOG_ORIGIN = "walk.daylight.test/audit"
# Production refuses an Argon2id cost below OWASP's floor (and doctor fails one): the cheapest
# pair at the floor, so that the logins stay quick.
ARGON2 = {"DAYLIGHT_ARGON2__TIME_COST": "5", "DAYLIGHT_ARGON2__MEMORY_COST_KIB": "7168"}
TOTP_STEP_SECONDS = 30
RECOVERY_KEY = re.compile(r"RECOVERY KEY[^\n]*\n\s*\n[ \t]+(\S[^\n]*)\n")
LINK = re.compile(r"^\s+/link/(\S+)\s*$", re.MULTILINE)
FINGERPRINT_ON_PAGE = re.compile(r"<code data-fingerprint>([0-9a-f ]+)</code>")
KEYGEN_WROTE = re.compile(r"Wrote the backup key (\S+) \(mode 0600\) and its public key (\S+?)\.\n")


def write_env_file(path: Path, settings: dict[str, str]) -> Path:
    """Plain KEY=value lines, readable by its owner only (it may hold a database password)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.writelines(f"{name}={value}\n" for name, value in settings.items())
    assert path.stat().st_mode & 0o777 == 0o600
    return path


def daylight(installed: Installed, env_file: Path, *args: str, stdin: str = "") -> str:
    """`daylight --env-file F ARGS` of the installed venv, from its empty run dir, with no DAYLIGHT_
    setting in the environment; must exit 0. Its stdout."""
    command = [installed.daylight, "--env-file", str(env_file), *args]
    result = subprocess.run(
        command,
        cwd=installed.run_dir,
        env=operator_env(installed.venv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )
    shown = " ".join(command[1:])
    assert result.returncode == 0, (
        f"daylight {shown} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result.stdout


@dataclass
class Member:
    """A staff member as their device knows them: password, TOTP secret, the steps used so far."""

    username: str
    password: str = field(default_factory=lambda: f"walk {secrets.token_hex(8)} staple")
    totp_secret: str = ""
    used_steps: list[int] = field(default_factory=list)

    def code(self) -> str:
        """A code the server takes: of the current step or the next, later than any used before
        (each step is accepted once per account); waits for the clock when both are used."""
        while True:
            current = int(time.time()) // TOTP_STEP_SECONDS
            step = max(current, self.used_steps[-1] + 1) if self.used_steps else current
            if step <= current + 1:
                break
            time.sleep(1)
        self.used_steps.append(step)
        return pyotp.TOTP(self.totp_secret).at(step * TOTP_STEP_SECONDS)


def activate(staff: str, link_path: str, member: Member) -> None:
    """Open the one-time link through the staff API: its TOTP secret, then a password and a code."""
    token = link_path.removeprefix("/link/")
    opened = httpx.get(f"{staff}/api/v1/account-links/{token}", timeout=HTTP_SECONDS)
    assert opened.status_code == 200, opened.text
    assert opened.json()["username"] == member.username
    member.totp_secret = opened.json()["totp_secret"]
    assert member.totp_secret
    done = httpx.post(
        f"{staff}/api/v1/account-links/{token}",
        json={"new_password": member.password, "otp": member.code()},
        timeout=HTTP_SECONDS,
    )
    assert done.status_code == 204, done.text


def log_in(staff: str, member: Member) -> httpx.Client:
    """A client with the member's new session. Production sets a Secure (__Host-) cookie, which
    a cookie jar keeps off plain http: the client sends it itself, as Tor Browser does to an
    onion service."""
    answer = httpx.post(
        f"{staff}/api/v1/auth/login",
        json={"username": member.username, "password": member.password, "otp": member.code()},
        timeout=HTTP_SECONDS,
    )
    assert answer.status_code == 200, answer.text
    [cookie] = [
        header.split(";", 1)[0]
        for header in answer.headers.get_list("set-cookie")
        if header.startswith("__Host-daylight_session=")
    ]
    return httpx.Client(base_url=staff, headers={"Cookie": cookie}, timeout=HTTP_SECONDS)


@pytest.fixture
def schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema, and its URL."""
    name, url = create_postgres_schema("daylight_walk")
    try:
        yield name, url
    finally:
        drop_postgres_schema(name)  # the restored one, by then


def test_the_operators_documented_path_with_the_installed_wheel(
    installed: Installed, schema: tuple[str, str], tmp_path: Path
) -> None:
    schema_name, database_url = schema
    data_dir, restored_dir = tmp_path / "org", tmp_path / "restored"
    env_file = write_env_file(
        tmp_path / "daylight.env",
        {
            "DAYLIGHT_DATABASE_URL": database_url,
            "DAYLIGHT_AUDIT_LOG_ORIGIN": AUDIT_LOG_ORIGIN,
            "DAYLIGHT_ENVIRONMENT": "production",
            **ARGON2,
        },
    )

    # 1. The organisation; the recovery key is shown once.
    created = daylight(installed, env_file, "init", "--data-dir", str(data_dir))
    recovery = RECOVERY_KEY.search(created)
    assert recovery, created
    recovery_key = recovery.group(1).strip()

    # 2. The first admin, from the command line (only while there is no admin).
    invited = daylight(
        installed, env_file, "accounts", "invite", "--data-dir", str(data_dir), "--username", "admin1"
    )
    admin_link = LINK.search(invited)
    assert admin_link, invited
    admin, lead = Member("admin1"), Member("lead1")

    intake_port, staff_port = free_ports(2)
    intake, staff = f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{staff_port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                installed.daylight,
                "--env-file",
                str(env_file),
                "serve",
                "--data-dir",
                str(data_dir),
                "--intake-port",
                str(intake_port),
                "--staff-port",
                str(staff_port),
                "--intake-workers",
                "1",
                "--staff-workers",
                "1",
            ],
            cwd=installed.run_dir,
            env=operator_env(installed.venv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the supervisor and its workers
        )
    pgid = process.pid
    try:
        deadline = time.monotonic() + SERVE_START_SECONDS
        while not both_healthy(intake, staff):
            assert process.poll() is None, f"serve exited ({process.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"daylight serve did not come up:\n{log_path.read_text()}"
            time.sleep(0.2)

        activate(staff, f"/link/{admin_link.group(1)}", admin)
        with log_in(staff, admin) as admin_client:
            invited_lead = admin_client.post("/api/v1/accounts", json={"username": "lead1", "role": "lead"})
            assert invited_lead.status_code == 201, invited_lead.text
        activate(staff, invited_lead.json()["link_path"], lead)

        # The lead reads their fingerprint off their own account page; the operator confirms it.
        with log_in(staff, lead) as lead_client:
            page = lead_client.get("/account")
            assert page.status_code == 200, page.text
            fingerprint = FINGERPRINT_ON_PAGE.search(page.text)
            assert fingerprint, page.text
            assert lead_client.get("/api/v1/auth/session").json()["holds_intake_key"] is False
        confirmed = daylight(
            installed,
            env_file,
            "accounts",
            "confirm",
            "--data-dir",
            str(data_dir),
            "lead1",
            "--fingerprint",
            fingerprint.group(1),
        )
        assert "Confirmed the key pair of lead1" in confirmed
        granted = daylight(
            installed,
            env_file,
            "keys",
            "grant-first",
            "--data-dir",
            str(data_dir),
            "--username",
            "lead1",
            stdin=recovery_key + "\n",
        )
        assert "to lead1, the organisation's first key holder" in granted, granted
        assert recovery_key not in granted

        # 3. A tip to the intake, read back by the lead in a new session.
        canary = f"CANARY-{secrets.token_hex(8)} they watched the meeting"
        submitted = httpx.post(
            f"{intake}/api/v1/tips", json={"narrative": canary, "language": "en"}, timeout=HTTP_SECONDS
        )
        assert submitted.status_code == 201, submitted.text
        with log_in(staff, lead) as lead_client:
            assert lead_client.get("/api/v1/auth/session").json()["holds_intake_key"] is True
            listed = lead_client.get("/api/v1/tips")
            assert listed.status_code == 200, listed.text
            [item] = listed.json()["items"]
            tip = lead_client.get(f"/api/v1/tips/{item['id']}")
            assert tip.status_code == 200, tip.text
            assert tip.json()["narrative"] == canary

        # 4. Served no more.
        process.terminate()
        process.wait(timeout=STOP_SECONDS)
        deadline = time.monotonic() + STOP_SECONDS
        while group_alive(pgid):
            assert time.monotonic() < deadline, f"workers left after SIGTERM:\n{log_path.read_text()}"
            time.sleep(0.2)
    finally:
        if process.poll() is None or group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=STOP_SECONDS)

    report = daylight(installed, env_file, "doctor", "--data-dir", str(data_dir))
    assert not [line for line in report.splitlines() if line.startswith("FAIL")], report

    # 5. An encrypted backup, restored into a new data dir on another fresh schema.
    keys_dir = tmp_path / "offline"
    wrote = daylight(installed, env_file, "backup-keygen", "--out", str(keys_dir))
    written = KEYGEN_WROTE.search(wrote)
    assert written, wrote
    private_key, public_key = Path(written.group(1)), Path(written.group(2))
    assert (private_key.parent.resolve(), public_key.parent.resolve()) == (keys_dir.resolve(),) * 2
    assert (private_key.name, public_key.name) == ("daylight-backup.key", "daylight-backup.pub")
    assert private_key.stat().st_mode & 0o777 == 0o600
    backup_file = tmp_path / "daylight.backup"
    backed_up = daylight(
        installed,
        env_file,
        "backup",
        "--data-dir",
        str(data_dir),
        "--output",
        str(backup_file),
        "--encrypt-to",
        str(public_key),
    )
    assert "encrypted to the backup key" in backed_up, backed_up
    assert backup_file.is_file()
    assert canary.encode() not in backup_file.read_bytes()

    # The deployment's database is lost; the backup is restored into a new data dir and an empty
    # database under the same name. (Not into another schema: the dump names its own schema, and
    # pg_restore recreates that one whatever search_path the target URL gives.)
    drop_postgres_schema(schema_name)
    restored_env_file = write_env_file(
        tmp_path / "restored.env",
        {
            "DAYLIGHT_DATABASE_URL": database_url,
            "DAYLIGHT_AUDIT_LOG_ORIGIN": AUDIT_LOG_ORIGIN,
            "DAYLIGHT_ENVIRONMENT": "production",
            **ARGON2,
        },
    )
    restored = daylight(
        installed,
        restored_env_file,
        "restore",
        "--from",
        str(backup_file),
        "--data-dir",
        str(restored_dir),
        stdin=private_key.read_text(encoding="utf-8"),
    )
    assert "restored the backup" in restored, restored
    daylight(installed, restored_env_file, "audit", "verify", "--data-dir", str(restored_dir))
