"""Receiving one submitted file: encrypted into the blob store as it streams in, pictures first
stripped of their metadata (app.intake.cleaning).

Nothing about the file's name is kept; its declared type is only shown to staff.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import threading
import uuid
from dataclasses import dataclass

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
# Documents have slots of their own: a crafted document may keep its child busy for the whole of
# document_cleaning_seconds, and two of them must not make every photo wait for a slot.
_DOCUMENT_SLOTS = threading.BoundedSemaphore(1)
# Enough of a file's first bytes to tell a picture or a document from anything else.
_SNIFF_WINDOW = max(cleaning.SNIFF_BYTES, cleaning.SNIFF_DOCUMENT_BYTES)
# The encryptor's chunk: a re-encoded picture is encrypted in pieces of this size as the encoder
# writes it, so it is never held whole, in plaintext or ciphertext.
_CLEANED_PIECE_BYTES = 64 * 1024
# What a cleaned document may grow by beyond twice its size (small files gain a few kilobytes of
# new cross-reference table and object layout).
_OUTPUT_ALLOWANCE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DocumentCleaning:
    """The operator's bounds on cleaning documents (settings; docs/deploy.md)."""

    max_bytes: int  # larger documents are stored as sent
    seconds: float
    memory_bytes: int  # the child process's address space

    def max_held_bytes(self, budget_bytes: int) -> int:
        """The largest document held for cleaning: within the setting, and small enough that the
        original, its joined copy and the cleaned output fit in the budget together."""
        return min(self.max_bytes, max(0, (budget_bytes - _OUTPUT_ALLOWANCE) // 3))

    @staticmethod
    def output_limit(size: int, max_file_bytes: int) -> int:
        """Rewriting a document keeps its size, give or take its object layout: output much
        larger than the input is not a cleaned copy of it but a file built to decompress."""
        return min(max_file_bytes, 2 * size + _OUTPUT_ALLOWANCE)


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


class _Held(enum.Enum):
    """What a file being received turned out to be, once its first bytes are in."""

    UNDECIDED = "undecided"
    IMAGE = "image"  # held whole, then re-encoded from pixels (app.intake.cleaning)
    DOCUMENT = "document"  # held whole, then cleaned in a child process (cleaning.documents)


class AttachmentWriter:
    """Encrypts one uploaded file into the blob store as it streams in.

    Images and documents (recognised by their first bytes, never by name or declared type) are
    the exception: they are collected and cleaned of their metadata (app.intake.cleaning) before
    anything of them is encrypted, because cleaning needs the whole file. Every other file
    (recordings, videos, archives, text) streams straight through the cipher and is marked as
    still carrying whatever metadata it had; so is a document the cleaner could not read within
    its bounds, or one too large to hold (staff are told which, and why).

    What is held counts against the process's image memory budget from the moment it is held:
    the reservation grows as the bytes arrive, covers the cleaning when the part ends, and is
    released by `close` or `abort`, whichever comes first, however the upload ends.
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
        documents: DocumentCleaning | None = None,
    ) -> None:
        self.attachment_id = attachment_id
        self.data_key = data_key
        self.content_type = _declared_content_type(content_type)
        self.metadata = cleaning.MetadataOutcome.NOT_REMOVED
        self.not_cleaned_reason: str | None = None
        self._encryptor = ATTACHMENT_BLOB.encryptor(
            data_key, row_id=str(attachment_id), key_version=key_version
        )
        self._max_bytes = max_bytes
        self._clean_images = clean_images
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels
        self._documents = documents if clean_images else None
        self._memory = image_memory.reservation()
        self._sink = blob_store.create(attachment_id)
        self._sink.write(self._encryptor.header)
        self._held: list[bytes] | None = []  # the first bytes until the type is known; all of a held file
        self._kind = _Held.UNDECIDED
        self._document_kind: cleaning.DocumentKind | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise PayloadTooLarge(N_("An attached file is larger than this service accepts."))
        if self._held is None:
            self._sink.write(self._encryptor.update(data))
            return
        self._held.append(data)
        if self._kind is _Held.UNDECIDED and self.size >= _SNIFF_WINDOW:
            self._decide()
        if self._kind is _Held.IMAGE:
            if self.size > self._max_image_bytes:
                raise cleaning.ImageTooLarge
            # Held bytes are memory as much as decoded pixels are: sixteen uploads of 32 MiB each
            # are half a gigabyte before anything is decoded. (The sniffing window, at most one
            # chunk, is held for any file and not counted.)
            self._memory.grow_to(self.size)
        elif self._kind is _Held.DOCUMENT:
            assert self._documents is not None  # noqa: S101 - DOCUMENT only when documents are cleaned
            if self.size > self._documents.max_held_bytes(self._memory.limit_bytes):
                self._store_as_sent("too large to clean")
            else:
                self._memory.grow_to(self.size)

    def _decide(self) -> None:
        assert self._held is not None  # noqa: S101 - only called while holding
        head = b"".join(self._held)
        if (
            self._clean_images
            and len(head) >= cleaning.SNIFF_BYTES
            and cleaning.sniff_image(head[: cleaning.SNIFF_BYTES])
        ):
            self._kind = _Held.IMAGE
        elif self._documents is not None and (kind := cleaning.sniff_document(head)) is not None:
            self._kind = _Held.DOCUMENT
            self._document_kind = kind
        else:
            self._held = None
            self._sink.write(self._encryptor.update(head))

    def _store_as_sent(self, reason: str) -> None:
        """A document that will not be cleaned: what is held goes to the cipher, the rest streams
        after it, and staff are told why it still carries its metadata."""
        assert self._held is not None  # noqa: S101 - only called while holding
        for chunk in self._held:
            self._sink.write(self._encryptor.update(chunk))
        self._held = None
        self._memory.release()
        self.not_cleaned_reason = reason

    def close(self) -> None:
        if self._held is not None and self._kind is _Held.UNDECIDED:
            # Shorter than the sniffing window: decided on what there is.
            self._decide()
        if self._held is not None:
            try:
                if self._kind is _Held.IMAGE:
                    self._write_cleaned_image()
                else:
                    self._write_cleaned_document()
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

    def _write_cleaned_document(self) -> None:
        # Only called while holding a document, which is only held when documents are cleaned.
        assert self._held is not None  # noqa: S101
        assert self._documents is not None  # noqa: S101
        assert self._document_kind is not None  # noqa: S101
        # One document at a time per process: its child takes a core, as a picture does.
        if not _DOCUMENT_SLOTS.acquire(timeout=cleaning.CLEANING_WAIT_SECONDS):
            raise cleaning.ImageCleaningBusy
        try:
            output_limit = self._documents.output_limit(self.size, self._max_bytes)
            # The joined copy, then the cleaned one beside the original.
            self._memory.grow_to(self.size + max(self.size, output_limit))
            original = b"".join(self._held)
            self._held = None
            try:
                cleaned = cleaning.clean_document(
                    original,
                    self._document_kind,
                    max_output_bytes=output_limit,
                    seconds=self._documents.seconds,
                    memory_bytes=self._documents.memory_bytes,
                )
            except cleaning.DocumentNotCleaned as refused:
                self._held = [original]
                self._store_as_sent(refused.reason)
                return
            self.size = 0
            self._encrypt_cleaned(cleaned.data)
            self.content_type = cleaned.content_type
            self.metadata = cleaning.MetadataOutcome.REMOVED
        finally:
            _DOCUMENT_SLOTS.release()

    def _encrypt_cleaned(self, data: bytes | bytearray) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            # A few hundred kilobytes can decode to pixels that re-encode to hundreds of
            # megabytes (noise survives no compressor): the file limit holds for what is stored.
            raise cleaning.ImageTooLarge
        for start in range(0, len(data), _CLEANED_PIECE_BYTES):
            self._sink.write(self._encryptor.update(bytes(data[start : start + _CLEANED_PIECE_BYTES])))

    def abort(self) -> None:
        self._held = None
        self._memory.release()
        self._sink.close()

    def details(self) -> bytes:
        """What staff are told about the file, sealed with its key: no name, ever."""
        details: dict[str, object] = {
            "size": self.size,
            "content_type": self.content_type,
            "metadata": self.metadata.value,
        }
        if self.not_cleaned_reason is not None:
            details["not_cleaned"] = self.not_cleaned_reason
        return json.dumps(details).encode()
