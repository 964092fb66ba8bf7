"""Attachment blob storage: in the data dir (one node) or in the database (several nodes).
Blobs are ciphertext only; names are random row ids."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import Integer, LargeBinary, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from app.config import Settings
from app.db import Base, Database


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, blob_id: uuid.UUID) -> Path:
        # A UUID's hex form cannot carry a path separator: no traversal by construction.
        return self.root / blob_id.hex

    def create(self, blob_id: uuid.UUID) -> BinaryIO:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._path(blob_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return os.fdopen(fd, "wb")

    def open(self, blob_id: uuid.UUID) -> BinaryIO:
        return self._path(blob_id).open("rb")

    def exists(self, blob_id: uuid.UUID) -> bool:
        return self._path(blob_id).exists()

    def delete(self, blob_id: uuid.UUID) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(blob_id).unlink()


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


class DatabaseBlobStore:
    """Ciphertext in `blob_chunks`, so every node sees every file (`blob_storage = "database"`).

    Each chunk is written in a short transaction of its own while an upload streams
    in (the request's transaction is not open then); the request's rollback cleanup
    deletes them, exactly as it deletes a file in the data dir.
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
            return session.scalar(select(BlobChunk.position).where(BlobChunk.blob_id == blob_id).limit(1)) \
                is not None

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
            self._store(bytes(self._buffer[:self._chunk_bytes]))
            del self._buffer[:self._chunk_bytes]
        return len(data)

    def _store(self, data: bytes) -> None:
        with self._database.transaction() as session:
            session.add(BlobChunk(blob_id=self._blob_id, position=self._position, data=data))
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
            data = session.scalar(select(BlobChunk.data).where(BlobChunk.blob_id == self._blob_id,
                                                              BlobChunk.position == self._position))
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
