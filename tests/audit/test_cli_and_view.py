"""`daylight audit verify|export|checkpoint` on a real data dir, and tampering shown to the auditor."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from app.auth.models import Role
from tests.audit_log.test_log import drop_append_only_triggers, fill
from tests.auth.factories import login
from tests.conftest import Backend, Organisation

ENV = {"PATH": "/usr/bin:/bin", "DAYLIGHT_ARGON2__TIME_COST": "1", "DAYLIGHT_ARGON2__MEMORY_COST_KIB": "8"}


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
    assert result.stdout.startswith("ok: 11 events")  # demo: 10, the seed import: 1


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
