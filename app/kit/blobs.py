"""Attachment blob storage: in the data dir (one node) or in the database (several nodes).
Blobs are ciphertext only; names are random row ids.

A blob exists before the row that names it commits, so a process killed in
between leaves an orphan: `app.intake.orphans` finds and sweeps those, with the
listing helpers below (this module knows nothing of attachment rows).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from sqlalchemy import Date, Index, Integer, LargeBinary, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from app.kit import clock
from app.kit.config import Settings
from app.kit.db import Base, Database


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (a new file, a new subdirectory) survive a power cut.

    fsync on a file makes its bytes durable, not its name: without this a crash
    after the commit could leave a committed attachment row whose file is gone.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableFileWriter:
    """A blob file that is on disk, name and bytes, once `close()` returns.

    The intake closes the writer before the request's transaction commits the row
    naming the blob, so an acknowledged receipt never points at a file a power cut
    or kill -9 could still take back from the page cache.
    """

    def __init__(self, file: BinaryIO, directory: Path) -> None:
        self._file = file
        self._directory = directory

    def write(self, data: bytes, /) -> int:
        return self._file.write(data)

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        fsync_directory(self._directory)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, blob_id: uuid.UUID) -> Path:
        # A UUID's hex form cannot carry a path separator: no traversal by construction.
        return self.root / blob_id.hex

    def _ensure_root(self) -> None:
        if self.root.is_dir():
            return
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The directory's own name lives in its parent: durable before any blob in it is.
        fsync_directory(self.root.parent)

    def create(self, blob_id: uuid.UUID) -> DurableFileWriter:
        self._ensure_root()
        fd = os.open(self._path(blob_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return DurableFileWriter(os.fdopen(fd, "wb"), self.root)

    def open(self, blob_id: uuid.UUID) -> BinaryIO:
        return self._path(blob_id).open("rb")

    def exists(self, blob_id: uuid.UUID) -> bool:
        return self._path(blob_id).exists()

    def delete(self, blob_id: uuid.UUID) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(blob_id).unlink()

    def blob_ids(self) -> Iterator[uuid.UUID]:
        """Every file named as a blob; anything else in the directory is not ours to judge."""
        if not self.root.is_dir():
            return
        with os.scandir(self.root) as entries:
            for entry in entries:
                blob_id = _blob_id_from_name(entry.name)
                if blob_id is not None and entry.is_file(follow_symlinks=False):
                    yield blob_id

    def last_written(self, blob_id: uuid.UUID) -> dt.datetime | None:
        """The file's mtime (its last write), or None once it is gone."""
        try:
            return dt.datetime.fromtimestamp(self._path(blob_id).stat().st_mtime, dt.UTC)
        except FileNotFoundError:
            return None


def _blob_id_from_name(name: str) -> uuid.UUID | None:
    try:
        blob_id = uuid.UUID(hex=name)
    except ValueError:
        return None
    return blob_id if blob_id.hex == name else None


class BlobStorage(Protocol):
    """Where attachment ciphertext lives: the data dir (one node) or the database (several)."""

    def create(self, blob_id: uuid.UUID) -> BlobWriter: ...
    def open(self, blob_id: uuid.UUID) -> BlobReader: ...
    def exists(self, blob_id: uuid.UUID) -> bool: ...
    def delete(self, blob_id: uuid.UUID) -> None: ...


class BlobWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def close(self) -> None: ...


class BlobReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...
    def close(self) -> None: ...


class BlobChunk(Base):
    """A slice of an attachment's ciphertext, for deployments with several app nodes."""

    __tablename__ = "blob_chunks"

    blob_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # When a crash's orphan may be swept. The UTC day only: a finer time next to an
    # attachment would time a submitter's upload, and DESIGN keeps nothing finer than
    # the day about submitters (tip_attachments.added_on holds the same day).
    written_on: Mapped[dt.date] = mapped_column(Date)

    __table_args__ = (
        # The orphan sweep reads only ids and days: this index answers it without
        # touching the (large) chunk rows.
        Index("ix_blob_chunks_blob_id_written_on", "blob_id", "written_on"),
    )


def chunk_days_certainly_before(moment: dt.datetime) -> dt.date:
    """Chunks with `written_on` before the returned day were written before `moment`.

    Only the day is stored, so a chunk counts as written at the very end of its
    day: a sweep may wait up to a day longer than asked, never less.
    """
    return moment.astimezone(dt.UTC).date()


class DatabaseBlobStore:
    """Ciphertext in `blob_chunks`, so every node sees every file (`blob_storage = "database"`).

    Each chunk is written in a short transaction of its own while an upload streams
    in (the request's transaction is not open then); the request's rollback cleanup
    deletes them, exactly as it deletes a file in the data dir. A process killed
    mid-upload cannot: its chunks carry their day so that the orphan sweep can
    tell them from an upload still streaming on another node.
    """

    CHUNK_BYTES = 1 << 20

    def __init__(self, database: Database) -> None:
        self._database = database

    def create(self, blob_id: uuid.UUID) -> _ChunkWriter:
        return _ChunkWriter(self._database, blob_id, self.CHUNK_BYTES)

    def open(self, blob_id: uuid.UUID) -> _ChunkReader:
        if not self.exists(blob_id):
            raise FileNotFoundError(blob_id.hex)
        return _ChunkReader(self._database, blob_id)

    def exists(self, blob_id: uuid.UUID) -> bool:
        with self._database.transaction() as session:
            return (
                session.scalar(select(BlobChunk.position).where(BlobChunk.blob_id == blob_id).limit(1))
                is not None
            )

    def delete(self, blob_id: uuid.UUID) -> None:
        with self._database.transaction() as session:
            session.execute(delete(BlobChunk).where(BlobChunk.blob_id == blob_id))


class _ChunkWriter:
    def __init__(self, database: Database, blob_id: uuid.UUID, chunk_bytes: int) -> None:
        self._database, self._blob_id, self._chunk_bytes = database, blob_id, chunk_bytes
        self._buffer = bytearray()
        self._position = 0
        self._closed = False

    def write(self, data: bytes, /) -> int:
        self._buffer += data
        while len(self._buffer) >= self._chunk_bytes:
            self._store(bytes(self._buffer[: self._chunk_bytes]))
            del self._buffer[: self._chunk_bytes]
        return len(data)

    def _store(self, data: bytes) -> None:
        with self._database.transaction() as session:
            session.add(
                BlobChunk(
                    blob_id=self._blob_id,
                    position=self._position,
                    data=data,
                    written_on=clock.today(),
                )
            )
        self._position += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._buffer or self._position == 0:
            self._store(bytes(self._buffer))
            self._buffer.clear()


class _ChunkReader:
    def __init__(self, database: Database, blob_id: uuid.UUID) -> None:
        self._database, self._blob_id = database, blob_id
        self._position = 0
        self._pending = b""
        self._done = False

    def _next_chunk(self) -> bytes | None:
        with self._database.transaction() as session:
            data = session.scalar(
                select(BlobChunk.data).where(
                    BlobChunk.blob_id == self._blob_id, BlobChunk.position == self._position
                )
            )
        self._position += 1
        return data

    def read(self, size: int = -1, /) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            chunk = self._next_chunk()
            if chunk is None:
                self._done = True
            else:
                self._pending += chunk
        if size < 0:
            size = len(self._pending)
        result, self._pending = self._pending[:size], self._pending[size:]
        return result

    def close(self) -> None:
        self._done, self._pending = True, b""

    def __enter__(self) -> _ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def blob_storage_for(settings: Settings, database: Database) -> BlobStorage:
    if settings.blob_storage == "database":
        return DatabaseBlobStore(database)
    return BlobStore(settings.blobs_dir)


# The columns whose values name blobs (an attachment row's id, a referral's sealed bundle), filled
# by the features that own them as their models are imported: the orphan sweep deletes, and the
# backup leaves out, only blobs that none of them names (app.intake.orphans).
_BLOB_NAMING_COLUMNS: list[Any] = []


def register_blob_names(column: Any) -> None:
    """Declare a mapped column whose values are blob ids."""
    if not any(column is known for known in _BLOB_NAMING_COLUMNS):
        _BLOB_NAMING_COLUMNS.append(column)


def blob_naming_columns() -> tuple[Any, ...]:
    return tuple(_BLOB_NAMING_COLUMNS)
