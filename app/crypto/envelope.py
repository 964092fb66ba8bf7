"""Versioned, key-committing AES-256-GCM envelopes for field values.

Format v1 (all integers big-endian)::

    b"DLE" | 0x01 | key_version:u32 | salt:32 | commitment:32 | ciphertext || tag:16

A fresh random salt per envelope feeds HKDF-SHA256 over the data key, giving a
one-time AES-256-GCM key, its nonce and a 32-byte commitment. Because the key
and nonce are single-use, nonce reuse across billions of fields under one data
key is not a concern.

Key commitment: AES-GCM alone is not committing, so a crafted ciphertext can
open under two different keys to two different plaintexts (the "invisible
salamander" attack). The commitment is an HKDF output bound to the data key,
the salt and the AAD; it is checked in constant time before decryption, so an
envelope opens under one key and one context only.

The AAD is the caller's context (table, column, row id, key version, see
`app.crypto.contracts`) plus the header, so an envelope copied to another row,
column or key version fails to open.
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.crypto.binding import bind
from app.crypto.errors import DecryptionError

MAGIC = b"DLE"
FORMAT_V1 = 1
KEY_BYTES = 32
SALT_BYTES = 32
COMMITMENT_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">3sBI")
HEADER_BYTES = _HEADER.size + SALT_BYTES + COMMITMENT_BYTES
OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES


def new_data_key() -> bytes:
    """A fresh 256-bit data key from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def _derive(data_key: bytes, salt: bytes, aad: bytes) -> tuple[bytes, bytes, bytes]:
    if len(data_key) != KEY_BYTES:
        raise ValueError("data keys are 32 bytes")
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES + NONCE_BYTES + COMMITMENT_BYTES,
        salt=salt,
        info=bind("daylight/envelope/v1", aad),
    ).derive(data_key)
    return okm[:KEY_BYTES], okm[KEY_BYTES : KEY_BYTES + NONCE_BYTES], okm[-COMMITMENT_BYTES:]


def seal_envelope(data_key: bytes, plaintext: bytes, aad: bytes, *, key_version: int) -> bytes:
    salt = os.urandom(SALT_BYTES)
    return seal_envelope_with_salt(data_key, plaintext, aad, key_version=key_version, salt=salt)


def seal_envelope_with_salt(
    data_key: bytes, plaintext: bytes, aad: bytes, *, key_version: int, salt: bytes
) -> bytes:
    """`seal_envelope` with a caller-chosen salt: for known-answer tests only; never reuse a salt."""
    if len(salt) != SALT_BYTES:
        raise ValueError("salt must be 32 bytes")
    if not 0 <= key_version < 2**32:
        raise ValueError("key versions are unsigned 32-bit integers")
    enc_key, nonce, commitment = _derive(data_key, salt, aad)
    header = _HEADER.pack(MAGIC, FORMAT_V1, key_version) + salt + commitment
    return header + AESGCM(enc_key).encrypt(nonce, plaintext, header + aad)


def envelope_key_version(envelope: bytes) -> int:
    """The key version an envelope claims, to pick the key before opening it."""
    if len(envelope) < OVERHEAD_BYTES:
        raise DecryptionError
    magic, version, key_version = _HEADER.unpack_from(envelope)
    if magic != MAGIC or version != FORMAT_V1:
        raise DecryptionError
    return int(key_version)


def open_envelope(data_key: bytes, envelope: bytes, aad: bytes, *, key_version: int) -> bytes:
    if envelope_key_version(envelope) != key_version:
        raise DecryptionError
    salt = envelope[_HEADER.size : _HEADER.size + SALT_BYTES]
    stored_commitment = envelope[_HEADER.size + SALT_BYTES : HEADER_BYTES]
    enc_key, nonce, commitment = _derive(data_key, salt, aad)
    if not hmac.compare_digest(commitment, stored_commitment):
        raise DecryptionError
    try:
        return AESGCM(enc_key).decrypt(nonce, envelope[HEADER_BYTES:], envelope[:HEADER_BYTES] + aad)
    except InvalidTag as exc:
        raise DecryptionError from exc
