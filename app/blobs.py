"""Attachment blob storage in the data dir. Blobs are ciphertext only; names are random row ids."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO


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
