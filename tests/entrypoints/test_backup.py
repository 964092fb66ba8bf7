"""Backup and restore on both databases: a round trip to a new data dir, where the audit log verifies
and the demo's reports read back; damaged backups and occupied targets are refused; orphan blobs
are left out."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient

from app.entrypoints import cli
from app.entrypoints.apps import create_intake_app, create_staff_app
from app.kit.config import load_settings
from app.kit.db import Database
from tests.conftest import drop_postgres_schema


def demo_organisation(data_dir: Path, database_url: str | None, monkeypatch: pytest.MonkeyPatch) -> Path:
    if database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", database_url)
    source = data_dir / "org"
    assert cli.main(["demo", "--data-dir", str(source)]) == 0
    assert cli.main(["audit", "checkpoint", "--data-dir", str(source)]) == 0
    return source


def test_a_backup_restores_into_a_new_data_dir_and_reads_back(
    data_dir: Path,
    committed_database_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = demo_organisation(data_dir, committed_database_url, monkeypatch)
    backup_dir = data_dir / "backup"
    assert cli.main(["backup", "--data-dir", str(source), "--output", str(backup_dir)]) == 0
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    assert manifest["database"] == ("postgresql" if committed_database_url else "sqlite")
    assert any(name.startswith("secrets/") for name in manifest["files"])
    assert oct(backup_dir.stat().st_mode & 0o777) == "0o700"
    if committed_database_url:
        schema = committed_database_url.split("search_path%3D")[1]
        drop_postgres_schema(schema)  # the database is gone; only the backup remains
    target = data_dir / "restored"
    assert cli.main(["restore", "--from", str(backup_dir), "--data-dir", str(target)]) == 0
    capsys.readouterr()
    assert cli.main(["audit", "verify", "--data-dir", str(target)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")

    # The demo caseworker logs in to the restored organisation and reads a report.
    caseworker = next(
        user
        for user in json.loads((source / "demo-credentials.json").read_text())["users"]
        if user["role"] == "caseworker"
    )
    settings = load_settings(target)
    database = Database.from_settings(settings)
    try:
        with TestClient(create_staff_app(settings, database=database), base_url="https://staff") as staff:
            assert (
                staff.post(
                    "/api/v1/auth/login",
                    json={
                        "username": caseworker["username"],
                        "password": caseworker["password"],
                        "otp": pyotp.TOTP(caseworker["totp_secret"]).now(),
                    },
                ).status_code
                == 200
            )
            items = staff.get("/api/v1/tips").json()["items"]
            assert items
            assert staff.get(f"/api/v1/tips/{items[0]['id']}").json()["narrative"].startswith("(Demo)")
    finally:
        database.engine.dispose()


def test_a_damaged_backup_or_an_occupied_target_is_refused(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = demo_organisation(data_dir, None, monkeypatch)
    backup_dir = data_dir / "backup"
    assert cli.main(["backup", "--data-dir", str(source), "--output", str(backup_dir)]) == 0
    assert cli.main(["backup", "--data-dir", str(source), "--output", str(backup_dir)]) == 1  # exists
    assert cli.main(["restore", "--from", str(backup_dir), "--data-dir", str(source)]) == 1  # not empty
    assert "is not empty" in capsys.readouterr().err
    secret = backup_dir / "secrets" / "receipt_pepper"
    secret.write_text(secret.read_text().replace("A", "B", 1) if "A" in secret.read_text() else "x")
    target = data_dir / "restored"
    assert cli.main(["restore", "--from", str(backup_dir), "--data-dir", str(target)]) == 1
    assert "does not match its checksum" in capsys.readouterr().err
    assert not target.exists()


def test_a_backup_names_the_secrets_it_could_not_copy_because_the_environment_holds_them(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = demo_organisation(data_dir, None, monkeypatch)
    pepper = (source / "secrets" / "receipt_pepper").read_text().strip()
    monkeypatch.setenv("DAYLIGHT_SECRET_RECEIPT_PEPPER", pepper)
    (source / "secrets" / "receipt_pepper").unlink()
    capsys.readouterr()
    assert cli.main(["backup", "--data-dir", str(source), "--output", str(data_dir / "backup")]) == 0
    manifest = json.loads((data_dir / "backup" / "manifest.json").read_text())
    assert manifest["secrets_from_environment"] == ["receipt_pepper"]
    assert "secrets/receipt_pepper" not in manifest["files"]
    err = capsys.readouterr().err
    assert "receipt_pepper" in err
    assert pepper not in err


def test_a_backup_copies_the_blobs_rows_name_and_leaves_orphans_behind(
    data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = demo_organisation(data_dir, committed_database_url, monkeypatch)
    settings = load_settings(source)
    database = Database.from_settings(settings)
    try:
        with TestClient(create_intake_app(settings, database=database), base_url="https://intake") as intake:
            sent = intake.post(
                "/api/v1/tips",
                data={"narrative": "with a file"},
                files=[("files", ("a.bin", b"evidence" * 100, "application/pdf"))],
            )
            assert sent.status_code == 201
    finally:
        database.engine.dispose()
    (named,) = [path.name for path in settings.blobs_dir.iterdir()]
    orphan = uuid.uuid4().hex  # what a server killed mid-upload leaves
    (settings.blobs_dir / orphan).write_bytes(b"ciphertext of an upload that never committed")

    backup_dir = data_dir / "backup"
    assert cli.main(["backup", "--data-dir", str(source), "--output", str(backup_dir)]) == 0
    files = json.loads((backup_dir / "manifest.json").read_text())["files"]
    assert [name for name in files if name.startswith("blobs/")] == [f"blobs/{named}"]
    assert not (backup_dir / "blobs" / orphan).exists()
