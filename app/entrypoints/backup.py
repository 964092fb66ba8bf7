"""`daylight backup` and `daylight restore`: the database, the secrets and the attachment files,
with a manifest of SHA-256 checksums that restore checks before writing anything.

A backup holds the same secrets as the server (receipt pepper, signing key...):
keep it as carefully as the server itself, encrypted and offline. It holds no
key that opens content: that still needs a staff password or the recovery key.

The database copy is consistent (SQLite's online backup API; `pg_dump`'s
snapshot). Files are copied right after it: an attachment added in between is
in the copy without its row (harmless ciphertext), and one purged in between
is missing, which is why a backup is best taken from a quiet system (or with
`daylight serve` stopped).

Only blob files that an attachment row names (looked up after the database
copy) are copied: an upload still streaming, or a crash's orphan, is ciphertext
whose key no row holds, and a backup kept for years should not carry it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from sqlalchemy import inspect

from app.intake.orphans import blob_ids_named_by_rows
from app.kit.blobs import BlobStore
from app.kit.config import DATA_DIR_ENV_FILE, Settings
from app.kit.db import Database
from app.kit.server_secrets import SECRET_NAMES, secret_from_environment
from app.schema import migration_heads

FORMAT = "daylight-backup/v1"
MANIFEST = "manifest.json"
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"


class BackupError(Exception):
    """A backup or restore that cannot be done safely; nothing was changed."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _private_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(0o600)


@dataclass(frozen=True, slots=True)
class PgTarget:
    """The libpq form of a SQLAlchemy PostgreSQL URL, and the schema its search_path names, if any."""

    dsn: str
    schema: str | None


def pg_target(sqlalchemy_url: str) -> PgTarget:
    parts = urlsplit(sqlalchemy_url)
    scheme = parts.scheme.split("+", 1)[0]
    options = parse_qs(parts.query).get("options", [""])[0]
    schema = None
    for option in options.split():
        if option.startswith("-csearch_path="):
            schema = option.removeprefix("-csearch_path=")
    return PgTarget(urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")), schema)


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)  # noqa: S603
    if result.returncode != 0:
        # The tool's own message names a table or a connection problem; the URL is not repeated.
        raise BackupError(f"{Path(command[0]).name} failed: {result.stderr.strip().splitlines()[-1:]}")


def backup(settings: Settings, output: Path) -> dict[str, object]:
    if output.exists():
        raise BackupError(f"{output} exists: back up into a new directory.")
    output.mkdir(mode=0o700, parents=True)
    database = Database.from_settings(settings)
    try:
        if database.engine.dialect.name == "sqlite":
            kind = "sqlite"
            with (
                sqlite3.connect(settings.database_path) as source,
                sqlite3.connect(output / SQLITE_FILE) as target,
            ):
                source.backup(target)
            (output / SQLITE_FILE).chmod(0o600)
        else:
            kind = "postgresql"
            pg_dump = shutil.which("pg_dump")
            if pg_dump is None:
                raise BackupError("pg_dump is not installed: install postgresql-client (docs/deploy.md).")
            target_db = pg_target(settings.sqlalchemy_url)
            command = [
                pg_dump,
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--file={output / PG_FILE}",
                f"--dbname={target_db.dsn}",
            ]
            if target_db.schema:
                command.append(f"--schema={target_db.schema}")
            _run(command)
            (output / PG_FILE).chmod(0o600)
        blob_store = BlobStore(settings.blobs_dir)
        # After the copy: every row in it is seen (unless purged since), so no blob it names is left out.
        named_blob_ids = blob_ids_named_by_rows(database, list(blob_store.blob_ids()))
    finally:
        database.engine.dispose()
    if settings.secrets_dir.exists():
        for path in sorted(settings.secrets_dir.iterdir()):
            _private_copy(path, output / settings.secrets_dir.name / path.name)
    for blob_id in sorted(named_blob_ids):
        # A tip deleted or purged since the lookup takes its file with it: missing, as its row will be.
        with contextlib.suppress(FileNotFoundError):
            _private_copy(settings.blobs_dir / blob_id.hex, output / settings.blobs_dir.name / blob_id.hex)
    env_file = settings.data_dir / DATA_DIR_ENV_FILE
    if env_file.exists():
        _private_copy(env_file, output / DATA_DIR_ENV_FILE)
    files = {
        str(path.relative_to(output)): _sha256(path) for path in sorted(output.rglob("*")) if path.is_file()
    }
    manifest: dict[str, object] = {
        "format": FORMAT,
        "created_on": dt.datetime.now(dt.UTC).date().isoformat(),
        "database": kind,
        "migration_heads": sorted(migration_heads()),
        "files": files,
        # Secrets the environment supplies are not in `secrets/`, so not in this backup: without
        # them a restore opens nothing. Named here (never their values) so the operator knows.
        "secrets_from_environment": [name for name in SECRET_NAMES if secret_from_environment(name)],
    }
    (output / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (output / MANIFEST).chmod(0o600)
    return manifest


def _checked_manifest(source: Path) -> dict[str, object]:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(f"{source} has no readable {MANIFEST}: not a Daylight backup.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("Not a Daylight backup of a format this version reads.")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BackupError("The manifest lists no files.")
    for name, expected in files.items():
        path = (source / name).resolve()
        if source.resolve() not in path.parents or not path.is_file():
            raise BackupError(f"{name} is missing from the backup.")
        if _sha256(path) != expected:
            raise BackupError(f"{name} does not match its checksum: the backup is damaged or was altered.")
    if set(manifest.get("migration_heads") or []) != set(migration_heads()):
        raise BackupError("The backup was made by another version of Daylight: restore it with that version.")
    return manifest


def restore(source: Path, settings: Settings) -> dict[str, object]:
    """Into an empty data dir (and, for PostgreSQL, an empty database); every checksum first."""
    manifest = _checked_manifest(source)
    data_dir = settings.data_dir
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new data directory.")
    kind = manifest["database"]
    database = Database.from_settings(settings)
    try:
        dialect = database.engine.dialect.name
        if (kind == "sqlite") != (dialect == "sqlite"):
            raise BackupError(
                f"The backup holds a {kind} database; DAYLIGHT_DATABASE_URL points at {dialect}."
            )
        if dialect != "sqlite" and inspect(database.engine).has_table("audit_events"):
            raise BackupError("The target database is not empty: restore into an empty one.")
    finally:
        database.engine.dispose()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = manifest["files"]
    assert isinstance(files, dict)  # noqa: S101 - checked by _checked_manifest
    for name in files:
        if name in (MANIFEST, SQLITE_FILE, PG_FILE):
            continue
        _private_copy(source / name, data_dir / name)
    if kind == "sqlite":
        _private_copy(source / SQLITE_FILE, settings.database_path)
    else:
        pg_restore = shutil.which("pg_restore")
        if pg_restore is None:
            raise BackupError("pg_restore is not installed: install postgresql-client.")
        _run(
            [
                pg_restore,
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                f"--dbname={pg_target(settings.sqlalchemy_url).dsn}",
                str(source / PG_FILE),
            ]
        )
    os.chmod(data_dir, 0o700)
    return manifest
