"""Encrypted columns declared once, as contracts.

A contract names the table and column a ciphertext lives in; the AAD (for
envelopes and streams) or HPKE ``info`` (for sealed values) binds that name,
the row id and the key version. Feature models declare their contracts next
to their columns; `ENCRYPTED_COLUMNS` lists every one, and a test checks that
every binary column of the schema is declared here, so no column can hold
"ciphertext" outside the contract.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from app.crypto import envelope, sealing, streaming
from app.crypto.binding import bind
from app.crypto.streaming import StreamDecryptor, StreamEncryptor

RowId = str

ENCRYPTED_COLUMNS: dict[tuple[str, str], Contract] = {}


@dataclass(frozen=True, slots=True)
class Contract:
    table: str
    column: str

    def __post_init__(self) -> None:
        key = (self.table, self.column)
        if key in ENCRYPTED_COLUMNS:
            raise ValueError(f"{self.table}.{self.column} is declared twice")
        ENCRYPTED_COLUMNS[key] = self

    def context(self, row_id: RowId, key_version: int) -> bytes:
        return bind("daylight/contract/v1", type(self).__name__, self.table, self.column, row_id, key_version)


@dataclass(frozen=True, slots=True)
class EnvelopeColumn(Contract):
    """A field encrypted under a symmetric key (a tip's data key, a password-derived key)."""

    def seal(self, key: bytes, plaintext: bytes, *, row_id: RowId, key_version: int = 1) -> bytes:
        return envelope.seal_envelope(
            key, plaintext, self.context(row_id, key_version), key_version=key_version
        )

    def open(self, key: bytes, ciphertext: bytes, *, row_id: RowId, key_version: int = 1) -> bytes:
        return envelope.open_envelope(
            key, ciphertext, self.context(row_id, key_version), key_version=key_version
        )


@dataclass(frozen=True, slots=True)
class SealedColumn(Contract):
    """A value sealed with HPKE to a hybrid public key (data keys, key grants, replies)."""

    def seal(
        self, public_key: sealing.PublicKey, plaintext: bytes, *, row_id: RowId, key_version: int = 1
    ) -> bytes:
        return sealing.seal_to(public_key, plaintext, self.context(row_id, key_version))

    def open(
        self, private_key: sealing.PrivateKey, sealed: bytes, *, row_id: RowId, key_version: int = 1
    ) -> bytes:
        return sealing.open_sealed(private_key, sealed, self.context(row_id, key_version))


@dataclass(frozen=True, slots=True)
class StreamColumn(Contract):
    """A blob (attachment) in the streaming AEAD; the row says where the blob is stored."""

    def encryptor(self, key: bytes, *, row_id: RowId, key_version: int = 1) -> StreamEncryptor:
        return StreamEncryptor(key, self.context(row_id, key_version))

    def decryptor(self, key: bytes, *, row_id: RowId, key_version: int = 1) -> StreamDecryptor:
        return StreamDecryptor(key, self.context(row_id, key_version))

    def encrypt_file(
        self, source: BinaryIO, sink: BinaryIO, key: bytes, *, row_id: RowId, key_version: int = 1
    ) -> int:
        return streaming.encrypt_file(source, sink, key, self.context(row_id, key_version))

    def decrypt_chunks(
        self, source: streaming.ReadableBytes, key: bytes, *, row_id: RowId, key_version: int = 1
    ) -> Iterator[bytes]:
        return streaming.decrypt_chunks(source, key, self.context(row_id, key_version))


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A row whose one content field is under its own data key, that key sealed to the intake key
    (labels, saved views): the two contracts and the way the pair is written and read."""

    data_key: SealedColumn
    content: EnvelopeColumn

    def seal(
        self, intake_public: sealing.PublicKey, version: int, row_id: RowId, plaintext: bytes
    ) -> tuple[bytes, bytes]:
        """(sealed data key, ciphertext) of a new row under intake key ``version``."""
        key = envelope.new_data_key()
        return (
            self.data_key.seal(intake_public, key, row_id=row_id, key_version=version),
            self.content.seal(key, plaintext, row_id=row_id, key_version=version),
        )

    def open(
        self,
        intake_private: sealing.PrivateKey,
        sealed_key: bytes,
        ciphertext: bytes,
        *,
        row_id: RowId,
        intake_version: int,
        content_version: int,
    ) -> bytes:
        key = self.data_key.open(intake_private, sealed_key, row_id=row_id, key_version=intake_version)
        return self.content.open(key, ciphertext, row_id=row_id, key_version=content_version)
