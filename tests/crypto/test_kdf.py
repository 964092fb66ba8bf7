"""Argon2id login derivation split by HKDF (app.crypto.kdf)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto import kdf

PROPERTY = settings(max_examples=50, deadline=None, database=None)
CHEAP = kdf.Argon2Parameters(time_cost=1, memory_cost_kib=8, parallelism=1)

passwords = st.text(max_size=32)
salts = st.binary(min_size=kdf.SALT_BYTES, max_size=kdf.SALT_BYTES)


@PROPERTY
@given(password=passwords, salt=salts)
def test_derivation_is_deterministic_and_splits_two_keys(password: str, salt: bytes) -> None:
    keys = kdf.derive_login_keys(password, salt, CHEAP)
    again = kdf.derive_login_keys(password, salt, CHEAP)
    assert keys.verifier == again.verifier
    assert keys.key_encryption_key == again.key_encryption_key
    assert len(keys.verifier) == len(keys.key_encryption_key) == 32
    assert keys.verifier != keys.key_encryption_key


@PROPERTY
@given(password=passwords, salt=salts, other_salt=salts)
def test_another_salt_gives_other_keys(password: str, salt: bytes, other_salt: bytes) -> None:
    if other_salt == salt:
        other_salt = bytes([salt[0] ^ 1]) + salt[1:]
    keys = kdf.derive_login_keys(password, salt, CHEAP)
    other = kdf.derive_login_keys(password, other_salt, CHEAP)
    assert keys.verifier != other.verifier
    assert keys.key_encryption_key != other.key_encryption_key


@PROPERTY
@given(password=passwords, other_password=passwords, salt=salts)
def test_another_password_gives_other_keys(password: str, other_password: str, salt: bytes) -> None:
    if other_password == password:
        other_password = password + "x"
    keys = kdf.derive_login_keys(password, salt, CHEAP)
    other = kdf.derive_login_keys(other_password, salt, CHEAP)
    assert keys.verifier != other.verifier
    assert keys.key_encryption_key != other.key_encryption_key
    # Neither key of one login equals either key of the other.
    assert {keys.verifier, keys.key_encryption_key}.isdisjoint({other.verifier, other.key_encryption_key})


def test_cost_parameters_change_the_keys() -> None:
    salt = bytes(16)
    variants = [
        CHEAP,
        kdf.Argon2Parameters(time_cost=2, memory_cost_kib=8, parallelism=1),
        kdf.Argon2Parameters(time_cost=1, memory_cost_kib=64, parallelism=1),
        kdf.Argon2Parameters(time_cost=1, memory_cost_kib=16, parallelism=2),
    ]
    verifiers = {kdf.derive_login_keys("password", salt, p).verifier for p in variants}
    assert len(verifiers) == len(variants)


def test_login_keys_repr_is_redacted() -> None:
    keys = kdf.derive_login_keys("password", bytes(16), CHEAP)
    shown = repr(keys) + str(keys)
    assert "redacted" in shown
    for secret in (keys.verifier, keys.key_encryption_key):
        assert secret.hex() not in shown
        assert repr(secret) not in shown


def test_new_salts_are_random() -> None:
    salts = {kdf.new_salt() for _ in range(16)}
    assert len(salts) == 16
    assert {len(s) for s in salts} == {kdf.SALT_BYTES}
