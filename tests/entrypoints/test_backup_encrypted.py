"""Encrypted backups (`backup --encrypt-to`, `backup-keygen`, `restore` of a file) on both databases:
a round trip where the audit log verifies and a report reads back; nothing in the file is in clear;
a wrong key, a damaged or cut-short file and an archive naming paths outside itself restore
nothing; a backup without --encrypt-to says that it holds the secrets in clear."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from app.entrypoints import backup as backup_module
from app.entrypoints import cli
from app.entrypoints.apps import create_intake_app, create_staff_app
from app.kit.config import load_settings
from app.kit.db import Database, create_database_engine
from tests.conftest import drop_postgres_schema
from tests.entrypoints.test_backup import demo_organisation


def keygen(directory: Path) -> tuple[Path, Path]:
    assert cli.main(["backup-keygen", "--out", str(directory)]) == 0
    return directory / backup_module.PRIVATE_KEY_FILE, directory / backup_module.PUBLIC_KEY_FILE


def restore_with(monkeypatch: pytest.MonkeyPatch, backup_file: Path, target: Path, key_text: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(key_text))
    return cli.main(["restore", "--from", str(backup_file), "--data-dir", str(target)])


def postgres_schema_has_tables(database_url: str) -> bool:
    engine = create_database_engine(database_url)
    try:
        return bool(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def caseworker_reads_a_report(source: Path, target: Path) -> None:
    caseworker = next(
        user
        for user in json.loads((source / "demo-credentials.json").read_text())["users"]
        if user["role"] == "caseworker"
    )
    settings = load_settings(target)
    database = Database.from_settings(settings)
    try:
        with TestClient(create_staff_app(settings, database=database), base_url="https://staff") as staff:
            login = staff.post(
                "/api/v1/auth/login",
                json={
                    "username": caseworker["username"],
                    "password": caseworker["password"],
                    "otp": pyotp.TOTP(caseworker["totp_secret"]).now(),
                },
            )
            assert login.status_code == 200
            items = staff.get("/api/v1/tips").json()["items"]
            assert items
            assert staff.get(f"/api/v1/tips/{items[0]['id']}").json()["narrative"].startswith("(Demo)")
    finally:
        database.engine.dispose()


def test_an_encrypted_backup_holds_nothing_in_clear_and_only_its_key_restores_it(
    data_dir: Path,
    tmp_path: Path,
    committed_database_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
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
    (blob,) = settings.blobs_dir.iterdir()
    blob_bytes = blob.read_bytes()
    private_file, public_file = keygen(tmp_path / "offline")
    wrong_private_file, _ = keygen(tmp_path / "another-offline")
    capsys.readouterr()

    # The same data dir backed up in clear, for the markers an encrypted file must not show.
    plain_dir = data_dir / "plain"
    assert cli.main(["backup", "--data-dir", str(source), "--output", str(plain_dir)]) == 0
    assert "secrets in clear" in capsys.readouterr().err
    database_file = plain_dir / ("database.pgdump" if committed_database_url else "database.sqlite3")
    database_header = b"PGDMP" if committed_database_url else b"SQLite format 3"
    assert database_file.read_bytes().startswith(database_header)
    markers = [
        database_header,
        b"manifest.json",
        b"daylight-backup",  # the manifest's format name
        *((source / "secrets" / name).read_bytes().strip() for name in ("receipt_pepper", "totp_key")),
    ]
    if not committed_database_url:  # pg_dump compresses table data; SQLite pages hold it as is
        assert b"demo-caseworker" in database_file.read_bytes()
        markers.append(b"demo-caseworker")

    backup_file = data_dir / "daylight.backup"
    assert (
        cli.main(
            [
                "backup",
                "--data-dir",
                str(source),
                "--output",
                str(backup_file),
                "--encrypt-to",
                str(public_file),
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "encrypted to the backup key with fingerprint" in out
    fingerprint = backup_module.fingerprint(backup_module.read_public_key(public_file))
    assert fingerprint in out
    assert backup_module.read_encrypted_header(backup_file).fingerprint == fingerprint
    assert "in clear" not in err
    assert oct(backup_file.stat().st_mode & 0o777) == "0o600"
    assert not [path.name for path in source.iterdir() if path.name.startswith(".backup-")]  # staging gone
    assert blob.read_bytes() == blob_bytes  # hard-linked into the staging dir, which is gone: still here
    sealed = backup_file.read_bytes()
    assert sealed.startswith(backup_module.ENCRYPTED_MAGIC + bytes([backup_module.ENCRYPTED_VERSION]))
    for marker in markers:
        assert marker not in sealed, marker

    if committed_database_url:
        schema = committed_database_url.split("search_path%3D")[1]
        drop_postgres_schema(schema)  # the database is gone; only the backup remains
    target = data_dir / "restored"

    # The wrong key, a damaged file and a cut-short one restore nothing, and say why.
    assert restore_with(monkeypatch, backup_file, target, wrong_private_file.read_text()) == 1
    assert (
        f"encrypted to the backup key with fingerprint {fingerprint}; the key given"
        in capsys.readouterr().err
    )
    damaged = data_dir / "damaged.backup"
    flipped = bytearray(sealed)
    flipped[len(sealed) // 2] ^= 0x01
    damaged.write_bytes(bytes(flipped))
    assert restore_with(monkeypatch, damaged, target, private_file.read_text()) == 1
    assert "does not authenticate" in capsys.readouterr().err
    cut = data_dir / "cut.backup"
    cut.write_bytes(sealed[: len(sealed) - 100])
    assert restore_with(monkeypatch, cut, target, private_file.read_text()) == 1
    assert "does not authenticate" in capsys.readouterr().err
    assert not target.exists()
    if committed_database_url:
        assert not postgres_schema_has_tables(committed_database_url)

    # The key, as the key file redirected to stdin.
    assert restore_with(monkeypatch, backup_file, target, private_file.read_text()) == 0
    capsys.readouterr()
    assert oct(target.stat().st_mode & 0o777) == "0o700"
    assert not [path.name for path in target.iterdir() if path.name.startswith(".restore-")]
    assert sorted(path.name for path in (target / "secrets").iterdir()) == sorted(
        path.name for path in (source / "secrets").iterdir()
    )
    assert (target / "blobs" / blob.name).read_bytes() == blob_bytes
    assert cli.main(["audit", "verify", "--data-dir", str(target)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    caseworker_reads_a_report(source, target)


def test_a_backup_key_pair_is_private_where_it_must_be_and_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private_file, public_file = keygen(tmp_path / "offline")
    out = capsys.readouterr().out
    assert oct((tmp_path / "offline").stat().st_mode & 0o777) == "0o700"
    assert oct(private_file.stat().st_mode & 0o777) == "0o600"
    assert oct(public_file.stat().st_mode & 0o777) == "0o644"
    public_key = backup_module.read_public_key(public_file)
    fingerprint = backup_module.fingerprint(public_key)
    assert fingerprint in out
    assert fingerprint in private_file.read_text()
    backup_key = backup_module.backup_key_from_text(private_file.read_text())
    assert backup_module.backup_private_key(backup_key).public_key() == public_key
    # Typed back by hand: lower case, spaces for dashes, O for 0.
    typed = backup_key.lower().replace("-", " ").replace("0", "o")
    assert backup_module.backup_private_key(typed).public_key() == public_key
    before = private_file.read_bytes()
    assert cli.main(["backup-keygen", "--out", str(tmp_path / "offline")]) == 1
    assert "already holds a backup key pair" in capsys.readouterr().err
    assert private_file.read_bytes() == before
    # The private key is no public key.
    with pytest.raises(backup_module.BackupError, match="not a backup public key"):
        backup_module.read_public_key(private_file)


def test_a_backup_without_encrypt_to_says_it_holds_the_secrets_in_clear(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = demo_organisation(data_dir, None, monkeypatch)
    capsys.readouterr()
    assert cli.main(["backup", "--data-dir", str(source), "--output", str(data_dir / "backup")]) == 0
    err = capsys.readouterr().err
    assert "this backup holds the server's secrets in clear" in err
    assert "--encrypt-to" in err
    # A public key that is not one is refused before anything is written.
    bogus = data_dir / "bogus.pub"
    bogus.write_text("daylight-backup-public-key-v1 AAAA\n")
    output = data_dir / "never.backup"
    assert (
        cli.main(["backup", "--data-dir", str(source), "--output", str(output), "--encrypt-to", str(bogus)])
        == 1
    )
    assert "not a backup public key" in capsys.readouterr().err
    assert not output.exists()


def test_an_archive_naming_a_path_outside_itself_restores_nothing(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Anyone with the public key can make a file that decrypts: the archive is not trusted."""
    source = demo_organisation(data_dir, None, monkeypatch)
    private_file, public_file = keygen(tmp_path / "offline")
    named = backup_module._archive_entry

    def escaping(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info = named(info)
        if info.name == "daylight.env":
            info.name = "../../escaped.env"
        return info

    monkeypatch.setattr(backup_module, "_archive_entry", escaping)
    backup_file = data_dir / "crafted.backup"
    assert (
        cli.main(
            [
                "backup",
                "--data-dir",
                str(source),
                "--output",
                str(backup_file),
                "--encrypt-to",
                str(public_file),
            ]
        )
        == 0
    )
    capsys.readouterr()
    target = tmp_path / "deep" / "restored"
    assert restore_with(monkeypatch, backup_file, target, private_file.read_text()) == 1
    assert "outside the backup" in capsys.readouterr().err
    assert not target.exists()
    assert not (tmp_path / "escaped.env").exists()
    assert not (tmp_path / "deep" / "escaped.env").exists()


def test_an_occupied_target_is_refused_before_the_key_is_asked_for(
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = demo_organisation(data_dir, None, monkeypatch)
    _, public_file = keygen(tmp_path / "offline")
    backup_file = data_dir / "daylight.backup"
    argv = [
        "backup",
        "--data-dir",
        str(source),
        "--output",
        str(backup_file),
        "--encrypt-to",
        str(public_file),
    ]
    assert cli.main(argv) == 0
    assert cli.main(argv) == 1  # never overwritten
    capsys.readouterr()
    stdin = io.StringIO("")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert cli.main(["restore", "--from", str(backup_file), "--data-dir", str(source)]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert stdin.tell() == 0  # nothing read
