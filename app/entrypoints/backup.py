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

Encrypted backups (`daylight backup --encrypt-to daylight-backup.pub`): the same
directory, as a tar archive, sealed to a backup key pair that `daylight
backup-keygen` makes on the operator's offline machine. The server holds only
the public half, so a backup stolen from the server, the backup host or the
transfer opens with nothing found there. Format v1 (integers big-endian)::

    "DAYLIGHT-BACKUP" | 0x01 | recipient:32 | sealed_len:u16 | sealed data key
    STREAM (app.crypto.streaming) of the tar archive under the data key

- ``recipient`` is the SHA-256 of the backup public key (its first 80 bits are
  the fingerprint `backup-keygen` prints), so a wrong key is named as such.
- The data key is 32 random bytes, HPKE-sealed (app.crypto.sealing, the
  project's one hybrid ML-KEM-768 + X25519 suite) with the info
  ``bind("daylight/backup/v1", "data-key", magic | version | recipient)``.
- The archive is the project's streaming AEAD under that data key, its AAD
  ``bind("daylight/backup/v1", "archive", header)`` over every header byte, so
  nothing in the header can be changed or swapped unnoticed. It is written and
  read chunk by chunk: the size of a backup is bounded by the disk, not memory.

The backup key is a code (256 bits, Crockford base32 in groups of four, like
the recovery key) from which the key pair is derived: it can be kept on paper,
and `daylight restore` reads it on stdin (typed at a prompt, or a file
redirected), never from a path on the server.

The plaintext copy an encrypted backup or restore needs is staged in a private
directory inside the data dir, which holds the same data anyway, and removed
at the end.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import parse_qs, urlsplit, urlunsplit

from sqlalchemy import inspect

import app.models  # noqa: F401 - every model, so every column naming a blob is registered (app.kit.blobs)
from app.auth.password_keys import key_fingerprint
from app.crypto import human_codes, sealing
from app.crypto.binding import bind
from app.crypto.envelope import new_data_key
from app.crypto.errors import DecryptionError
from app.crypto.streaming import CHUNK_BYTES, StreamEncryptor, decrypt_chunks
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


def _private_link(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (a blob is never rewritten in place, and a
    staging copy is deleted right after), else a copy."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileNotFoundError:
        raise
    except OSError:
        _private_copy(source, target)


def _private_move(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.replace(source, target)
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


def backup(settings: Settings, output: Path, *, link_blobs: bool = False) -> dict[str, object]:
    """Into the new directory ``output``. ``link_blobs`` hard-links the attachment files instead
    of copying them: only for a staging copy inside the data dir, deleted once archived."""
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
    place_blob = _private_link if link_blobs else _private_copy
    for blob_id in sorted(named_blob_ids):
        # A tip deleted or purged since the lookup takes its file with it: missing, as its row will be.
        with contextlib.suppress(FileNotFoundError):
            place_blob(settings.blobs_dir / blob_id.hex, output / settings.blobs_dir.name / blob_id.hex)
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


def require_empty_data_dir(settings: Settings, *, besides: Path | None = None) -> None:
    """Restore writes into a new or empty data dir only (``besides``: its own staging dir)."""
    data_dir = settings.data_dir
    if data_dir.exists() and any(path != besides for path in data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new data directory.")


def restore(source: Path, settings: Settings) -> dict[str, object]:
    """A backup directory into an empty data dir (and, for PostgreSQL, an empty database);
    every checksum first."""
    return _restore(source, settings, staged=False)


def _restore(source: Path, settings: Settings, *, staged: bool) -> dict[str, object]:
    """``staged``: ``source`` is a staging dir inside the data dir, whose files are moved."""
    manifest = _checked_manifest(source)
    data_dir = settings.data_dir
    require_empty_data_dir(settings, besides=source if staged else None)
    place = _private_move if staged else _private_copy
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
        place(source / name, data_dir / name)
    if kind == "sqlite":
        place(source / SQLITE_FILE, settings.database_path)
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


# Encrypted backups (the module docstring has the format).
ENCRYPTED_MAGIC = b"DAYLIGHT-BACKUP"
ENCRYPTED_VERSION = 1
_PURPOSE = "daylight/backup/v1"
_RECIPIENT_BYTES = 32
_PREFIX_BYTES = len(ENCRYPTED_MAGIC) + 1 + _RECIPIENT_BYTES
_SEALED_LENGTH = struct.Struct(">H")
BACKUP_KEY_BITS = 256
BACKUP_KEY_CHARS = -(-BACKUP_KEY_BITS // 5)  # 52 Crockford base32 characters
PRIVATE_KEY_FILE = "daylight-backup.key"
PUBLIC_KEY_FILE = "daylight-backup.pub"
PUBLIC_KEY_LABEL = "daylight-backup-public-key-v1"


def backup_private_key(backup_key: str) -> sealing.PrivateKey:
    """The key pair a backup key (the code `backup-keygen` writes) derives."""
    digits = human_codes.normalize(backup_key, length=BACKUP_KEY_CHARS)
    if digits is None:
        raise BackupError(
            f"That is not a backup key ({BACKUP_KEY_CHARS} characters in groups of four, "
            f"as in {PRIVATE_KEY_FILE})."
        )
    return sealing.derive_private_key(digits.encode(), "backup-key")


def fingerprint(public_key: sealing.PublicKey) -> str:
    return key_fingerprint(public_key.raw)


def _write_new(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), mode)  # whatever the umask
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_key_pair(directory: Path) -> tuple[Path, Path, str]:
    """A new backup key (mode 0600) and its public key (0644) in ``directory``; never overwrites.
    Returns both paths and the fingerprint."""
    private_path, public_path = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    if private_path.exists() or public_path.exists():
        raise BackupError(f"{directory} already holds a backup key pair: choose another directory.")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    backup_key = human_codes.random_code(BACKUP_KEY_BITS)
    public_key = backup_private_key(backup_key).public_key()
    shown = fingerprint(public_key)
    _write_new(
        private_path,
        f"# Daylight backup key, fingerprint {shown}.\n"
        f"# It opens every backup made with `daylight backup --encrypt-to {PUBLIC_KEY_FILE}`.\n"
        "# Keep it offline (this machine, or on paper), never on the server. To restore:\n"
        f"#   daylight restore --from BACKUP_FILE --data-dir NEW_DIR < {PRIVATE_KEY_FILE}\n"
        "# (or type the line below when asked).\n"
        f"{backup_key}\n",
        0o600,
    )
    _write_new(
        public_path,
        f"# Daylight backup public key, fingerprint {shown}. Copy it to the server for\n"
        f"# `daylight backup --encrypt-to {PUBLIC_KEY_FILE}`; it cannot open a backup.\n"
        f"{PUBLIC_KEY_LABEL} {base64.b64encode(public_key.raw).decode()}\n",
        0o644,
    )
    return private_path, public_path, shown


def _meaningful_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def read_public_key(path: Path) -> sealing.PublicKey:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"Cannot read the backup public key {path}: {exc.__class__.__name__}.") from None
    lines = _meaningful_lines(text)
    label, _, encoded = lines[0].partition(" ") if len(lines) == 1 else ("", "", "")
    try:
        if label != PUBLIC_KEY_LABEL:
            raise ValueError
        return sealing.PublicKey(base64.b64decode(encoded.strip(), validate=True))
    except (ValueError, binascii.Error):
        raise BackupError(
            f"{path} is not a backup public key (`daylight backup-keygen` writes {PUBLIC_KEY_FILE})."
        ) from None


def backup_key_from_text(text: str) -> str:
    """The backup key in what was typed or piped: the key file's comment lines are skipped."""
    return " ".join(_meaningful_lines(text))


class _EncryptingWriter:
    """What tarfile writes to: each write is sealed chunk by chunk into ``sink``."""

    def __init__(self, sink: BinaryIO, encryptor: StreamEncryptor) -> None:
        self._sink = sink
        self._encryptor = encryptor
        self._written = 0

    def write(self, data: bytes, /) -> int:
        self._sink.write(self._encryptor.update(data))
        self._written += len(data)
        return len(data)

    def read(self, size: int, /) -> bytes:
        raise OSError("write only")

    def tell(self) -> int:
        return self._written

    def seek(self, pos: int, /) -> int:
        raise OSError("not seekable")

    def close(self) -> None:
        """The last chunk is the caller's to seal (`StreamEncryptor.finalize`)."""


class _DecryptingReader:
    """What tarfile reads from: plaintext released chunk by chunk, confirmed by `drain`."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self._position = 0
        self.finished = False

    def _fill(self, size: int) -> None:
        while not self.finished and (size < 0 or len(self._buffer) < size):
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self.finished = True  # decrypt_chunks returns only after the final chunk opened

    def read(self, size: int = -1, /) -> bytes:
        self._fill(size)
        if size < 0:
            size = len(self._buffer)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._position += len(data)
        return data

    def drain(self) -> None:
        """Read to the end, so that the last chunk's check (truncation) has run."""
        while self.read(CHUNK_BYTES):
            pass

    def write(self, data: bytes, /) -> int:
        raise OSError("read only")

    def tell(self) -> int:
        return self._position

    def seek(self, pos: int, /) -> int:
        raise OSError("not seekable")

    def close(self) -> None:
        pass


def _archive_entry(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Nothing about this host or these files' times: copies are fresh, but an attachment's
    # time would date a submission (the server keeps no time finer than the day).
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = 0o700 if info.isdir() else 0o600
    return info


def _write_encrypted(source: Path, output: Path, public_key: sealing.PublicKey) -> None:
    recipient = hashlib.sha256(public_key.raw).digest()
    prefix = ENCRYPTED_MAGIC + bytes([ENCRYPTED_VERSION]) + recipient
    data_key = new_data_key()
    sealed_key = sealing.seal_to(public_key, data_key, _PURPOSE, "data-key", prefix)
    header = prefix + _SEALED_LENGTH.pack(len(sealed_key)) + sealed_key
    encryptor = StreamEncryptor(data_key, bind(_PURPOSE, "archive", header))
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as sink:
            sink.write(header)
            sink.write(encryptor.header)
            writer = _EncryptingWriter(sink, encryptor)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                for path in sorted(source.rglob("*")):
                    archive.add(
                        path,
                        arcname=path.relative_to(source).as_posix(),
                        recursive=False,
                        filter=_archive_entry,
                    )
            sink.write(encryptor.finalize())
            sink.flush()
            os.fsync(sink.fileno())
    except BaseException:
        output.unlink(missing_ok=True)
        raise


def encrypted_backup(settings: Settings, output: Path, public_key: sealing.PublicKey) -> dict[str, object]:
    """`backup`, written as one file that only the backup key opens."""
    if output.exists():
        raise BackupError(f"{output} exists: back up into a new file.")
    if not output.parent.is_dir():
        raise BackupError(f"{output.parent} is not a directory.")
    if not settings.data_dir.is_dir():
        raise BackupError(f"{settings.data_dir} is not a data directory.")
    staging = Path(tempfile.mkdtemp(prefix=".backup-", dir=settings.data_dir))
    try:
        manifest = backup(settings, staging / "backup", link_blobs=True)
        _write_encrypted(staging / "backup", output, public_key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


@dataclass(frozen=True, slots=True)
class EncryptedHeader:
    recipient: bytes
    prefix: bytes
    sealed_key: bytes
    raw: bytes

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the backup key it was made for, as `backup-keygen` printed it."""
        digest = self.recipient.hex()[:20]
        return " ".join(digest[i : i + 4] for i in range(0, 20, 4))


def is_encrypted_backup(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(len(ENCRYPTED_MAGIC)) == ENCRYPTED_MAGIC


def _read_header(handle: BinaryIO) -> EncryptedHeader:
    prefix = handle.read(_PREFIX_BYTES)
    length = handle.read(_SEALED_LENGTH.size)
    if len(prefix) < _PREFIX_BYTES or not prefix.startswith(ENCRYPTED_MAGIC) or len(length) < 2:
        raise BackupError("Not an encrypted Daylight backup.")
    if prefix[len(ENCRYPTED_MAGIC)] != ENCRYPTED_VERSION:
        raise BackupError("An encrypted backup of a format this version does not read.")
    (sealed_length,) = _SEALED_LENGTH.unpack(length)
    sealed_key = handle.read(sealed_length)
    if len(sealed_key) < sealed_length:
        raise BackupError("The encrypted backup is cut short.")
    return EncryptedHeader(
        recipient=prefix[len(ENCRYPTED_MAGIC) + 1 :],
        prefix=prefix,
        sealed_key=sealed_key,
        raw=prefix + length + sealed_key,
    )


def read_encrypted_header(path: Path) -> EncryptedHeader:
    with path.open("rb") as handle:
        return _read_header(handle)


def _open_data_key(header: EncryptedHeader, backup_key: str) -> bytes:
    private_key = backup_private_key(backup_key)
    given = private_key.public_key()
    if hashlib.sha256(given.raw).digest() != header.recipient:
        raise BackupError(
            f"This backup was encrypted to the backup key with fingerprint {header.fingerprint}; "
            f"the key given has fingerprint {fingerprint(given)}. Nothing was restored."
        )
    try:
        return sealing.open_sealed(private_key, header.sealed_key, _PURPOSE, "data-key", header.prefix)
    except DecryptionError:
        raise BackupError("The backup key does not open this backup: it is damaged or was altered.") from None


def _extract_member(archive: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or not name.parts or any(part in ("", ".", "..") for part in name.parts):
        raise BackupError(f"The archive names a path outside the backup: {member.name!r}.")
    path = target.joinpath(*name.parts)
    if member.isdir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return
    source = archive.extractfile(member) if member.isreg() else None
    if source is None:
        raise BackupError(f"The archive holds something other than files: {member.name!r}.")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as sink:
        shutil.copyfileobj(source, sink, CHUNK_BYTES)


def _decrypt_archive(handle: BinaryIO, header: EncryptedHeader, data_key: bytes, target: Path) -> None:
    reader = _DecryptingReader(decrypt_chunks(handle, data_key, bind(_PURPOSE, "archive", header.raw)))
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for member in archive:
                _extract_member(archive, member, target)
        reader.drain()
    except DecryptionError:
        raise BackupError(
            "The encrypted backup does not authenticate: it is damaged, cut short or was altered."
        ) from None
    except tarfile.TarError:
        raise BackupError("The encrypted backup holds no readable archive.") from None
    if not reader.finished:  # pragma: no cover - drain reads to the end
        raise BackupError("The encrypted backup was not read to its end.")


def _empty(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def restore_encrypted(source: Path, settings: Settings, backup_key: str) -> dict[str, object]:
    """An encrypted backup file into an empty data dir (and, for PostgreSQL, an empty database).

    The key is checked first, then the whole archive is decrypted and authenticated into a
    staging dir inside the data dir, then restored as a backup directory is (every checksum,
    then the files, moved). On any failure the data dir is left as it was: empty or absent.
    """
    require_empty_data_dir(settings)
    with source.open("rb") as handle:
        header = _read_header(handle)
        data_key = _open_data_key(header, backup_key)
        data_dir = settings.data_dir
        created = not data_dir.exists()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=data_dir))
        try:
            _decrypt_archive(handle, header, data_key, staging)
            manifest = _restore(staging, settings, staged=True)
        except BaseException:
            _empty(data_dir)  # it was empty when restore began
            if created:
                data_dir.rmdir()
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    os.chmod(data_dir, 0o700)
    return manifest
