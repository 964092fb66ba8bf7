"""`daylight doctor` on both databases: a sound deployment passes; each kind of breakage is named."""

from __future__ import annotations

import base64
import datetime as dt
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from app.entrypoints import cli
from app.entrypoints.doctor import ORPHAN_MIN_AGE, Verdict, run_checks
from app.kit.blobs import BlobChunk, BlobStore
from app.kit.config import load_settings
from app.kit.db import Database


@pytest.fixture
def organisation_dir(
    data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    monkeypatch.setenv("DAYLIGHT_AUDIT_LOG_ORIGIN", "doctor.test/audit")
    target = data_dir / "org"
    assert cli.main(["init", "--data-dir", str(target)]) == 0
    assert (
        cli.main(
            [
                "stations",
                "import",
                str(Path("app/stations/seed/stations-seed.csv").resolve()),
                "--data-dir",
                str(target),
                "--apply",
            ]
        )
        == 0
    )
    return target


def verdicts(directory: Path) -> dict[str, Verdict]:
    return {finding.check: finding.verdict for finding in run_checks(load_settings(directory))}


def test_a_fresh_production_organisation_passes(
    organisation_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["doctor", "--data-dir", str(organisation_dir)]) == 0
    output = capsys.readouterr().out
    # The intake key, the row-MAC backfill (closed at once for a new organisation) and the
    # station import, signed.
    assert "OK    audit log: 3 events verify and are signed" in output
    assert "WARN  intake key: nobody holds it" in output  # init alone grants it to nobody


def test_a_secret_readable_by_others_or_a_placeholder_fails(organisation_dir: Path) -> None:
    pepper = organisation_dir / "secrets" / "receipt_pepper"
    pepper.chmod(0o644)
    assert verdicts(organisation_dir)["secret receipt_pepper"] is Verdict.FAIL
    pepper.chmod(0o600)
    pepper.write_text(base64.b64encode(bytes(32)).decode())
    assert verdicts(organisation_dir)["secret receipt_pepper"] is Verdict.FAIL
    assert cli.main(["doctor", "--data-dir", str(organisation_dir)]) == 1


def test_a_tampered_audit_log_fails(organisation_dir: Path) -> None:
    settings = load_settings(organisation_dir)
    database = Database.from_settings(settings)
    assert cli.main(["audit", "checkpoint", "--data-dir", str(organisation_dir)]) == 0
    with database.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.execute(text("DROP TRIGGER audit_events_no_update"))
        else:
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        connection.execute(text("UPDATE audit_events SET action = 'nothing.happened' WHERE seq = 1"))
    database.engine.dispose()
    assert verdicts(organisation_dir)["audit log"] is Verdict.FAIL


def test_development_mode_fails(data_dir: Path) -> None:
    assert cli.main(["demo", "--data-dir", str(data_dir / "demo")]) == 0
    assert verdicts(data_dir / "demo")["environment"] is Verdict.FAIL


def test_orphan_blobs_are_counted_never_named_and_young_ones_are_not_counted(
    organisation_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verdicts(organisation_dir)["orphan blobs"] is Verdict.OK
    settings = load_settings(organisation_dir)
    crashed_file, uploading_file, crashed_chunks = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for blob_id, idle_for in ((crashed_file, ORPHAN_MIN_AGE * 2), (uploading_file, dt.timedelta(minutes=1))):
        writer = BlobStore(settings.blobs_dir).create(blob_id)
        writer.write(b"ciphertext")
        writer.close()
        last_write = (dt.datetime.now(dt.UTC) - idle_for).timestamp()
        os.utime(settings.blobs_dir / blob_id.hex, (last_write, last_write))
    database = Database.from_settings(settings)
    try:
        with database.transaction() as session:
            session.add(
                BlobChunk(
                    blob_id=crashed_chunks,
                    position=0,
                    data=b"ciphertext",
                    written_on=dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3),
                )
            )
    finally:
        database.engine.dispose()

    capsys.readouterr()
    assert cli.main(["doctor", "--data-dir", str(organisation_dir)]) == 0  # a warning, not a failure
    output = capsys.readouterr().out
    assert "WARN  orphan blobs: 2 blob(s) belong to no attachment" in output
    assert "`daylight serve` removes them" in output
    for blob_id in (crashed_file, uploading_file, crashed_chunks):
        assert blob_id.hex not in output
        assert str(blob_id) not in output


def test_mail_settings_are_checked_without_repeating_the_password(
    organisation_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["doctor", "--data-dir", str(organisation_dir)]) == 0
    assert "OK    notices: no mail server set (smtp_url): no notices by e-mail" in capsys.readouterr().out
    monkeypatch.setenv("DAYLIGHT_SMTP_URL", "smtp://notifier:hunter2-secret@mail.example.org:25")
    assert cli.main(["doctor", "--data-dir", str(organisation_dir)]) == 1
    output = capsys.readouterr().out
    assert "FAIL  notices: smtp_url: smtp:// sends in the clear and is only allowed to this machine" in output
    assert "hunter2" not in output
    monkeypatch.setenv("DAYLIGHT_SMTP_URL", "smtp+starttls://notifier:hunter2-secret@mail.example.org:587")
    assert cli.main(["doctor", "--data-dir", str(organisation_dir)]) == 0
    output = capsys.readouterr().out
    assert "WARN  notices: mail_from is not set" in output
    assert "WARN  notices: staff_origin is not set" in output
    assert "OK    notice delivery: 0 notices waiting, none failing" in output
    assert "hunter2" not in output
