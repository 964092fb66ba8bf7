"""Chunked streaming AEAD for attachments, in constant memory.

The construction is the STREAM scheme of Hoang, Reyhanitabar, Rogaway and
Vizár ("Online authenticated-encryption and its nonce-reuse
misuse-resistance", 2015), as in Tink's streaming AEAD:

    header  = b"DLS" | 0x01 | salt:32 | commitment:32 | nonce_prefix:7
    chunk i = AES-256-GCM(file_key, nonce_prefix | i:u32 | final:u8, plaintext_i, aad=header)

- Each file gets its own key and commitment from HKDF over the tip's data key,
  a random salt and the caller's context (table, column, row id, key version),
  so a blob swapped between rows or tips fails to open, and a blob opens under
  one key only (key commitment, checked before any chunk is decrypted).
- The counter in the nonce detects reordered, duplicated or dropped chunks.
- The final-chunk flag detects truncation: a stream cut at a chunk boundary
  ends in a chunk sealed as non-final, which fails to open as the last one.

Plaintext chunks are 64 KiB; only one chunk is held in memory at a time.
Decrypted output is released chunk by chunk, so a consumer must treat it as
unconfirmed until `StreamDecryptor.finalize` returns (truncation is only
detectable at the end).
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterator
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.crypto.binding import bind
from app.crypto.errors import DecryptionError

CHUNK_BYTES = 64 * 1024
TAG_BYTES = 16
SEALED_CHUNK_BYTES = CHUNK_BYTES + TAG_BYTES
MAGIC = b"DLS"
FORMAT_V1 = 1
SALT_BYTES = 32
COMMITMENT_BYTES = 32
NONCE_PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + 1 + SALT_BYTES + COMMITMENT_BYTES + NONCE_PREFIX_BYTES
_MAX_CHUNKS = 2**32


def _derive_file_key(data_key: bytes, salt: bytes, aad: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=32 + COMMITMENT_BYTES,
        salt=salt,
        info=bind("daylight/stream/v1", aad),
    ).derive(data_key)
    return okm[:32], okm[32:]


def _nonce(prefix: bytes, counter: int, *, final: bool) -> bytes:
    if counter >= _MAX_CHUNKS:
        raise OverflowError("stream exceeds 2**32 chunks")
    return prefix + struct.pack(">IB", counter, 1 if final else 0)


class StreamEncryptor:
    """Feed plaintext with `update`, end with `finalize`; write what each returns, in order."""

    def __init__(
        self, data_key: bytes, aad: bytes, *, salt: bytes | None = None, nonce_prefix: bytes | None = None
    ) -> None:
        # salt and nonce_prefix are injectable for known-answer tests only.
        salt = os.urandom(SALT_BYTES) if salt is None else salt
        prefix = os.urandom(NONCE_PREFIX_BYTES) if nonce_prefix is None else nonce_prefix
        if len(salt) != SALT_BYTES or len(prefix) != NONCE_PREFIX_BYTES:
            raise ValueError("bad salt or nonce prefix length")
        file_key, commitment = _derive_file_key(data_key, salt, aad)
        self._aead = AESGCM(file_key)
        self._prefix = prefix
        self.header = MAGIC + bytes([FORMAT_V1]) + salt + commitment + prefix
        self._buffer = bytearray()
        self._counter = 0
        self._finished = False

    def _seal_chunk(self, chunk: bytes, *, final: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._counter, final=final), chunk, self.header)
        self._counter += 1
        return sealed

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("stream already finalized")
        self._buffer += data
        out = bytearray()
        # Keep at least one byte back: the last chunk must be sealed as final,
        # and only finalize() knows which one that is.
        while len(self._buffer) > CHUNK_BYTES:
            out += self._seal_chunk(bytes(self._buffer[:CHUNK_BYTES]), final=False)
            del self._buffer[:CHUNK_BYTES]
        return bytes(out)

    def finalize(self) -> bytes:
        if self._finished:
            raise ValueError("stream already finalized")
        self._finished = True
        last = self._seal_chunk(bytes(self._buffer), final=True)
        self._buffer.clear()
        return last


class StreamDecryptor:
    """Feed the sealed stream (header first) with `update`; `finalize` confirms its end."""

    def __init__(self, data_key: bytes, aad: bytes) -> None:
        self._data_key = data_key
        self._aad = aad
        self._aead: AESGCM | None = None
        self._header = b""
        self._prefix = b""
        self._buffer = bytearray()
        self._counter = 0
        self._finished = False

    def _read_header(self) -> None:
        header = bytes(self._buffer[:HEADER_BYTES])
        del self._buffer[:HEADER_BYTES]
        if header[:3] != MAGIC or header[3] != FORMAT_V1:
            raise DecryptionError
        salt = header[4 : 4 + SALT_BYTES]
        stored_commitment = header[4 + SALT_BYTES : 4 + SALT_BYTES + COMMITMENT_BYTES]
        file_key, commitment = _derive_file_key(self._data_key, salt, self._aad)
        if not hmac.compare_digest(commitment, stored_commitment):
            raise DecryptionError
        self._aead = AESGCM(file_key)
        self._header = header
        self._prefix = header[-NONCE_PREFIX_BYTES:]

    def _open_chunk(self, sealed: bytes, *, final: bool) -> bytes:
        assert self._aead is not None  # noqa: S101 - set by _read_header before any chunk
        try:
            chunk = self._aead.decrypt(_nonce(self._prefix, self._counter, final=final), sealed, self._header)
        except InvalidTag as exc:
            raise DecryptionError from exc
        self._counter += 1
        return chunk

    def update(self, data: bytes) -> bytes:
        if self._finished:
            raise ValueError("stream already finalized")
        self._buffer += data
        if self._aead is None:
            if len(self._buffer) < HEADER_BYTES:
                return b""
            self._read_header()
        out = bytearray()
        while len(self._buffer) > SEALED_CHUNK_BYTES:
            out += self._open_chunk(bytes(self._buffer[:SEALED_CHUNK_BYTES]), final=False)
            del self._buffer[:SEALED_CHUNK_BYTES]
        return bytes(out)

    def finalize(self) -> bytes:
        if self._finished:
            raise ValueError("stream already finalized")
        self._finished = True
        if self._aead is None or len(self._buffer) < TAG_BYTES:
            raise DecryptionError
        last = self._open_chunk(bytes(self._buffer), final=True)
        self._buffer.clear()
        return last


def encrypt_file(source: BinaryIO, sink: BinaryIO, data_key: bytes, aad: bytes) -> int:
    """Encrypt ``source`` into ``sink`` chunk by chunk; returns the plaintext size."""
    encryptor = StreamEncryptor(data_key, aad)
    sink.write(encryptor.header)
    size = 0
    while True:
        block = source.read(CHUNK_BYTES)
        if block is None:
            # A non-blocking stream with nothing ready is not the end of the
            # file: sealing here would produce a valid-looking truncated blob.
            raise BlockingIOError("encrypt_file needs a blocking source")
        if not block:
            break
        size += len(block)
        sink.write(encryptor.update(block))
    sink.write(encryptor.finalize())
    return size


class ReadableBytes(Protocol):
    """Anything with read(size): a file, or a blob read back from the database."""

    def read(self, size: int = -1, /) -> bytes: ...


def decrypt_chunks(source: ReadableBytes, data_key: bytes, aad: bytes) -> Iterator[bytes]:
    """Yield plaintext chunk by chunk; raises `DecryptionError` (at the latest at the end)."""
    decryptor = StreamDecryptor(data_key, aad)
    while block := source.read(SEALED_CHUNK_BYTES):
        if plaintext := decryptor.update(block):
            yield plaintext
    yield decryptor.finalize()
