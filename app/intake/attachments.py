"""Receiving one submitted file: encrypted into the blob store as it streams in, pictures first
stripped of their metadata (app.intake.cleaning).

Nothing about the file's name is kept; its declared type is only shown to staff.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import uuid

from app.intake import cleaning
from app.intake.models import ATTACHMENT_BLOB
from app.kit.blobs import BlobStorage
from app.kit.errors import N_, PayloadTooLarge

_DECLARED_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}")
UNKNOWN_CONTENT_TYPE = "application/octet-stream"
# Cleaning a picture is seconds of CPU for the largest ones: at most this many are cleaned at
# once per process, so photos cannot take every core. The others wait their turn (their uploads
# are complete) for at most cleaning.CLEANING_WAIT_SECONDS, then get a 503: a stream of costly
# pictures must not build a queue that every other submission waits minutes in.
_CLEANING_SLOTS = threading.BoundedSemaphore(2)
# The encryptor's chunk: a re-encoded picture is encrypted in pieces of this size as the encoder
# writes it, so it is never held whole, in plaintext or ciphertext.
_CLEANED_PIECE_BYTES = 64 * 1024


@functools.cache
def image_memory_budget(limit_bytes: int) -> cleaning.ImageMemoryBudget:
    """The process's budget for image cleaning (one per configured size: tests build apps with
    several; a deployment has one)."""
    return cleaning.ImageMemoryBudget(limit_bytes)


def _declared_content_type(declared: str | None) -> str:
    """The client's Content-Type for a file, when it is a plain type/subtype; never trusted to
    decide anything, only shown to staff (downloads are always octet-stream attachments)."""
    if declared and _DECLARED_TYPE.fullmatch(declared.strip()):
        return declared.strip().lower()
    return UNKNOWN_CONTENT_TYPE


class AttachmentWriter:
    """Encrypts one uploaded file into the blob store as it streams in.

    Images (recognised by their first bytes, never by name or declared type) are
    the exception: they are collected, re-encoded from pixels without their
    metadata (app.intake.cleaning) and only then encrypted, because decoding needs
    the whole file. Every other file streams straight through the cipher and is
    marked as still carrying whatever metadata it had.

    An image's bytes count against the process's image memory budget from the moment
    they are held: the reservation grows as they arrive, covers the decoding when the
    part ends, and is released by `close` or `abort`, whichever comes first, however
    the upload ends.
    """

    def __init__(
        self,
        *,
        attachment_id: uuid.UUID,
        data_key: bytes,
        key_version: int,
        blob_store: BlobStorage,
        max_bytes: int,
        content_type: str | None,
        clean_images: bool,
        max_image_bytes: int,
        max_image_pixels: int,
        image_memory: cleaning.ImageMemoryBudget,
    ) -> None:
        self.attachment_id = attachment_id
        self.data_key = data_key
        self.content_type = _declared_content_type(content_type)
        self.metadata = cleaning.MetadataOutcome.NOT_REMOVED
        self._encryptor = ATTACHMENT_BLOB.encryptor(
            data_key, row_id=str(attachment_id), key_version=key_version
        )
        self._max_bytes = max_bytes
        self._clean_images = clean_images
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels
        self._memory = image_memory.reservation()
        self._sink = blob_store.create(attachment_id)
        self._sink.write(self._encryptor.header)
        self._held: list[bytes] | None = []  # the first bytes until the type is known; all of an image
        self._image = False
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise PayloadTooLarge(N_("An attached file is larger than this service accepts."))
        if self._held is None:
            self._sink.write(self._encryptor.update(data))
            return
        self._held.append(data)
        if not self._image and self.size >= cleaning.SNIFF_BYTES:
            self._decide()
        if self._image:
            if self.size > self._max_image_bytes:
                raise cleaning.ImageTooLarge
            # Held bytes are memory as much as decoded pixels are: sixteen uploads of 32 MiB each
            # are half a gigabyte before anything is decoded. (The sniffing window, at most one
            # chunk, is held for any file and not counted.)
            self._memory.grow_to(self.size)

    def _decide(self) -> None:
        assert self._held is not None  # noqa: S101 - only called while holding
        head = b"".join(self._held)
        self._image = self._clean_images and cleaning.sniff_image(head[: cleaning.SNIFF_BYTES]) is not None
        if not self._image:
            self._held = None
            self._sink.write(self._encryptor.update(head))

    def close(self) -> None:
        if self._held is not None and not self._image:
            # Shorter than the sniffing window: too short to be a picture, stored as it came.
            self._clean_images = False
            self._decide()
        if self._held is not None:
            try:
                self._write_cleaned_image()
            finally:
                self._held = None
                self._memory.release()
        self._sink.write(self._encryptor.finalize())
        self._sink.close()

    def _write_cleaned_image(self) -> None:
        assert self._held is not None  # noqa: S101 - only called while holding
        if not _CLEANING_SLOTS.acquire(timeout=cleaning.CLEANING_WAIT_SECONDS):
            raise cleaning.ImageCleaningBusy
        try:
            # Joining copies the file once more, for a moment.
            self._memory.grow_to(2 * self.size)
            encoded = b"".join(self._held)
            self._held = None
            self._memory.shrink_to(len(encoded))
            self.size = 0
            self.content_type = cleaning.clean_image_into(
                encoded, self._encrypt_cleaned, max_pixels=self._max_image_pixels, memory=self._memory
            )
            self.metadata = cleaning.MetadataOutcome.REMOVED
        finally:
            _CLEANING_SLOTS.release()

    def _encrypt_cleaned(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            # A few hundred kilobytes can decode to pixels that re-encode to hundreds of
            # megabytes (noise survives no compressor): the file limit holds for what is stored.
            raise cleaning.ImageTooLarge
        for start in range(0, len(data), _CLEANED_PIECE_BYTES):
            self._sink.write(self._encryptor.update(data[start : start + _CLEANED_PIECE_BYTES]))

    def abort(self) -> None:
        self._held = None
        self._memory.release()
        self._sink.close()

    def details(self) -> bytes:
        """What staff are told about the file, sealed with its key: no name, ever."""
        return json.dumps(
            {"size": self.size, "content_type": self.content_type, "metadata": self.metadata.value}
        ).encode()
