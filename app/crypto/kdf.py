"""Password derivation for staff logins: one Argon2id run, split by HKDF.

One derivation per login yields two independent keys:

- the *login verifier*, stored in the database and compared in constant time;
- the *key-encryption key*, never stored, which unwraps the member's personal
  private key.

A database thief holds only the verifier; recovering the key-encryption key
from it would take inverting HKDF, so they are left with a password guessing
attack at Argon2id cost per guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from app.crypto.binding import bind

SALT_BYTES = 16
_ARGON2_OUTPUT_BYTES = 32


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    time_cost: int
    memory_cost_kib: int
    parallelism: int


@dataclass(frozen=True, slots=True, repr=False)
class LoginKeys:
    verifier: bytes
    key_encryption_key: bytes

    def __repr__(self) -> str:
        return "LoginKeys(<redacted>)"


def new_salt() -> bytes:
    return os.urandom(SALT_BYTES)


def derive_login_keys(password: str, salt: bytes, params: Argon2Parameters) -> LoginKeys:
    """Holds ``params.memory_cost_kib`` of memory until it returns, in the caller's thread: the
    application calls it only through app.auth.password_keys, which bounds how many run at once."""
    master = hash_secret_raw(
        secret=password.encode("utf-8"),
        salt=salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_cost_kib,
        parallelism=params.parallelism,
        hash_len=_ARGON2_OUTPUT_BYTES,
        type=Type.ID,
    )

    def expand(purpose: str) -> bytes:
        return HKDFExpand(
            algorithm=hashes.SHA256(), length=32, info=bind("daylight/login/v1", purpose)
        ).derive(master)

    return LoginKeys(verifier=expand("verifier"), key_encryption_key=expand("key-encryption"))
