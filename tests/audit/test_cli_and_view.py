"""`daylight audit verify|export|checkpoint` on a real data dir, and tampering shown to the auditor."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from base64 import b64decode
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import signing_key_from_seed, verifier_key
from app.auth.models import Role
from tests.audit_log.test_log import drop_append_only_triggers, fill
from tests.auth.factories import login
from tests.conftest import Backend, Organisation

ENV = {
    "PATH": "/usr/bin:/bin",
    "DAYLIGHT_ARGON2__TIME_COST": "1",
    "DAYLIGHT_ARGON2__MEMORY_COST_KIB": "8",
    # Production settings (the signer's own data dir) refuse that cost unless told it is a test's.
    "DAYLIGHT_ARGON2__ALLOW_BELOW_FLOOR_FOR_TESTS": "true",
}


def daylight(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=ENV,
        input=stdin,
    )


@pytest.fixture(scope="module")
def audited_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("audited") / "org"
    assert daylight("demo", "--data-dir", str(data_dir)).returncode == 0
    # Events from the command line (two per invitation), then a signed checkpoint.
    for number in range(5):
        assert (
            daylight(
                "accounts",
                "invite",
                "--data-dir",
                str(data_dir),
                "--username",
                f"member{number:02d}",
                "--role",
                "caseworker",
                # demo made an admin: the command line creates other accounts only when forced
                "--force",
                "--reason",
                "test",
            ).returncode
            == 0
        )
    signed = daylight("audit", "checkpoint", "--data-dir", str(data_dir))
    assert signed.returncode == 0
    assert signed.stdout.startswith("daylight.local/audit\n")
    return data_dir


@pytest.fixture
def audited_data_dir(audited_template: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "org"
    shutil.copytree(audited_template, copy)
    return copy


def tamper(data_dir: Path, statement: str) -> None:
    connection = sqlite3.connect(data_dir / "daylight.sqlite3")
    for table in ("audit_events", "audit_checkpoints"):
        for operation in ("update", "delete"):
            connection.execute(f"DROP TRIGGER IF EXISTS {table}_no_{operation}")
    connection.execute(statement)
    connection.commit()
    connection.close()


def test_verify_passes_on_an_intact_log(audited_data_dir: Path) -> None:
    result = daylight("audit", "verify", "--data-dir", str(audited_data_dir))
    assert result.returncode == 0, result.stderr
    # demo: 10, its intake key: 1, its four members' key pairs: 4, the seed import: 1, the row-MAC backfill: 1
    assert result.stdout.startswith("ok: 17 events")


@pytest.mark.parametrize(
    ("statement", "first_bad"),
    [
        ("UPDATE audit_events SET action = 'account.nothing' WHERE seq = 9", 9),
        ("DELETE FROM audit_events WHERE seq = 4", 4),
        ("DELETE FROM audit_events WHERE seq > 7", 8),
    ],
)
def test_verify_fails_naming_the_first_bad_event(
    audited_data_dir: Path, statement: str, first_bad: int
) -> None:
    tamper(audited_data_dir, statement)
    result = daylight("audit", "verify", "--data-dir", str(audited_data_dir))
    assert result.returncode == 1
    assert f"first bad event: {first_bad}" in result.stderr


def test_an_export_verifies_offline_and_its_tampering_is_caught(
    audited_data_dir: Path, tmp_path: Path
) -> None:
    export = tmp_path / "audit.jsonl"
    assert (
        daylight("audit", "export", "--data-dir", str(audited_data_dir), "--output", str(export)).returncode
        == 0
    )
    lines = export.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["type"] == "header"
    ok = daylight("audit", "verify", "--export", str(export), "--verifier-key", header["verifier_key"])
    assert ok.returncode == 0, ok.stderr

    edited = [json.loads(line) for line in lines]
    for record in edited:
        if record.get("type") == "event" and record["seq"] == 5:
            record["action"] = "account.nothing"
    export.write_text("\n".join(json.dumps(record) for record in edited) + "\n")
    caught = daylight("audit", "verify", "--export", str(export), "--verifier-key", header["verifier_key"])
    assert caught.returncode == 1
    assert "first bad event: 5" in caught.stderr


def test_the_auditors_page_shows_tampering(
    staff_client: TestClient, organisation: Organisation, db_session: Session, backend: Backend
) -> None:
    fill(db_session, 8)
    db_session.commit()
    assert login(staff_client, organisation[Role.AUDITOR]).status_code == 200
    token_page = staff_client.get("/audit")
    assert token_page.status_code == 200
    assert "test.action" in token_page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', token_page.text)
    assert csrf
    assert staff_client.post("/audit/checkpoint", data={"csrf_token": csrf.group(1)}).status_code == 200
    intact = staff_client.post("/audit/verify", data={"csrf_token": csrf.group(1)})
    assert 'data-verify="ok"' in intact.text
    drop_append_only_triggers(db_session, backend)
    db_session.execute(text("UPDATE audit_events SET outcome = 'failure' WHERE seq = 3"))
    db_session.commit()
    tampered = staff_client.post("/audit/verify", data={"csrf_token": csrf.group(1)})
    assert 'data-verify="tampered"' in tampered.text
    assert "First bad event: 3." in tampered.text


def test_a_log_whose_checkpoints_are_gone_does_not_verify(audited_data_dir: Path) -> None:
    tamper(audited_data_dir, "DELETE FROM audit_checkpoints")
    result = daylight("audit", "verify", "--data-dir", str(audited_data_dir))
    assert result.returncode == 1
    assert "UNSIGNED" in result.stderr
    assert "no signed checkpoint covers any of the" in result.stderr
    assert "ok" not in result.stdout


def test_every_command_that_records_events_signs_them_before_it_exits(audited_data_dir: Path) -> None:
    invited = daylight(
        "accounts",
        "invite",
        "--data-dir",
        str(audited_data_dir),
        "--username",
        "late",
        "--role",
        "lead",
        "--force",
        "--reason",
        "test",
    )
    assert invited.returncode == 0, invited.stderr
    result = daylight("audit", "verify", "--data-dir", str(audited_data_dir))
    assert result.returncode == 0, result.stderr
    assert "every event covered by a signed checkpoint" in result.stdout


def log_verifier_key(data_dir: Path) -> str:
    seed = b64decode((data_dir / "secrets" / "audit_signing_key").read_text())
    return verifier_key(signing_key_from_seed(seed).public_key(), "daylight.local/audit")


def test_one_event_proves_offline_and_any_change_to_the_proof_fails(
    audited_data_dir: Path, tmp_path: Path
) -> None:
    proof = tmp_path / "event-3.json"
    made = daylight(
        "audit", "prove", "--data-dir", str(audited_data_dir), "--seq", "3", "--output", str(proof)
    )
    assert made.returncode == 0, made.stderr
    key = log_verifier_key(audited_data_dir)
    # No database, no data dir: the file and the keys the checker trusts.
    checked = daylight("audit", "verify", "--proof", str(proof), "--verifier-key", key)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: event 3 is in the log")
    document = json.loads(proof.read_text())
    document["event"]["action"] = "account.nothing"
    proof.write_text(json.dumps(document))
    assert daylight("audit", "verify", "--proof", str(proof), "--verifier-key", key).returncode == 1
    # A proof no witness cosigned does not satisfy a checker who requires one.
    made = daylight(
        "audit", "prove", "--data-dir", str(audited_data_dir), "--seq", "3", "--output", str(proof)
    )
    witness_key = daylight(
        "audit", "witness-keygen", "--name", "w.example/1", "--key-file", str(tmp_path / "w")
    )
    required = daylight(
        "audit",
        "verify",
        "--proof",
        str(proof),
        "--verifier-key",
        key,
        "--witness-key",
        witness_key.stdout.strip(),
    )
    assert required.returncode == 1
    assert "INVALID" in required.stderr


def test_the_checkpoint_signer_runs_on_a_host_of_its_own(audited_data_dir: Path, tmp_path: Path) -> None:
    """Only the signer holds the signing key; the server verifies with the configured public key."""
    key = log_verifier_key(audited_data_dir)
    signer_home = tmp_path / "signer"
    signer_home.mkdir(mode=0o700)
    signing_key_file = signer_home / "audit_signing_key"
    (audited_data_dir / "secrets" / "audit_signing_key").rename(signing_key_file)
    server_env = {**ENV, "DAYLIGHT_AUDIT_VERIFIER_KEY": key}
    signer_env = {
        **ENV,
        "DAYLIGHT_DATABASE_URL": f"sqlite:///{audited_data_dir / 'daylight.sqlite3'}",
        "DAYLIGHT_SECRET_AUDIT_SIGNING_KEY_FILE": str(signing_key_file),
    }

    def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    invited = run(
        server_env,
        "accounts",
        "invite",
        "--data-dir",
        str(audited_data_dir),
        "--username",
        "x01",
        *("--role", "caseworker", "--force", "--reason", "test"),
    )
    assert invited.returncode == 0, invited.stderr
    waiting = run(server_env, "audit", "verify", "--data-dir", str(audited_data_dir))
    assert waiting.returncode == 0, waiting.stderr
    assert "2 events not yet covered" in waiting.stdout
    refused = run(server_env, "audit", "checkpoint", "--data-dir", str(audited_data_dir))
    assert refused.returncode == 2
    assert "does not hold the audit signing key" in refused.stderr
    signed = run(signer_env, "audit", "signer", "--once", "--data-dir", str(signer_home))
    assert signed.returncode == 0, signed.stderr
    covered = run(server_env, "audit", "verify", "--data-dir", str(audited_data_dir))
    assert covered.returncode == 0, covered.stderr
    assert "every event covered" in covered.stdout
    # The signer keeps its own memory, on its own host.
    assert (signer_home / "audit-signer-state.json").exists()
