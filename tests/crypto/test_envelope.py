"""Property tests for key-committing AES-256-GCM envelopes (app.crypto.envelope)."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto import envelope
from app.crypto.errors import DecryptionError

PROPERTY = settings(max_examples=100, deadline=None, database=None)

keys = st.binary(min_size=32, max_size=32)
plaintexts = st.binary(max_size=1024)
aads = st.binary(max_size=256)
key_versions = st.integers(min_value=0, max_value=2**32 - 1)


@PROPERTY
@given(key=keys, plaintext=plaintexts, aad=aads, key_version=key_versions)
def test_round_trip(key: bytes, plaintext: bytes, aad: bytes, key_version: int) -> None:
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=key_version)
    assert len(sealed) == envelope.OVERHEAD_BYTES + len(plaintext)
    if len(plaintext) >= 16:  # shorter ones may show up in random bytes by chance
        assert plaintext not in sealed[envelope.HEADER_BYTES :]
    assert envelope.envelope_key_version(sealed) == key_version
    assert envelope.open_envelope(key, sealed, aad, key_version=key_version) == plaintext


@PROPERTY
@given(key=keys, plaintext=plaintexts, aad=aads)
def test_fresh_salt_per_envelope(key: bytes, plaintext: bytes, aad: bytes) -> None:
    first = envelope.seal_envelope(key, plaintext, aad, key_version=1)
    second = envelope.seal_envelope(key, plaintext, aad, key_version=1)
    assert first[8:40] != second[8:40]
    assert first != second


@PROPERTY
@given(key=keys, plaintext=plaintexts, aad=aads, key_version=key_versions, data=st.data())
def test_any_bit_flip_is_rejected(
    key: bytes, plaintext: bytes, aad: bytes, key_version: int, data: st.DataObject
) -> None:
    sealed = bytearray(envelope.seal_envelope(key, plaintext, aad, key_version=key_version))
    bit = data.draw(st.integers(min_value=0, max_value=len(sealed) * 8 - 1), label="bit")
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionError):
        envelope.open_envelope(key, bytes(sealed), aad, key_version=key_version)


@PROPERTY
@given(key=keys, plaintext=plaintexts, aad=aads, key_version=key_versions, data=st.data())
def test_truncation_is_rejected(
    key: bytes, plaintext: bytes, aad: bytes, key_version: int, data: st.DataObject
) -> None:
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=key_version)
    cut = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1), label="cut")
    with pytest.raises(DecryptionError):
        envelope.open_envelope(key, sealed[:cut], aad, key_version=key_version)


@PROPERTY
@given(
    key=keys,
    plaintext=plaintexts,
    aad=aads,
    key_version=key_versions,
    extra=st.binary(min_size=1, max_size=64),
)
def test_appended_bytes_are_rejected(
    key: bytes, plaintext: bytes, aad: bytes, key_version: int, extra: bytes
) -> None:
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=key_version)
    with pytest.raises(DecryptionError):
        envelope.open_envelope(key, sealed + extra, aad, key_version=key_version)


@PROPERTY
@given(key=keys, plaintext=plaintexts, aad=aads, other_aad=aads, key_version=key_versions)
def test_other_aad_is_rejected(
    key: bytes, plaintext: bytes, aad: bytes, other_aad: bytes, key_version: int
) -> None:
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=key_version)
    if other_aad == aad:
        other_aad = aad + b"\x00"
    with pytest.raises(DecryptionError):
        envelope.open_envelope(key, sealed, other_aad, key_version=key_version)


@PROPERTY
@given(key=keys, plaintext=plaintexts, aad=aads, key_version=key_versions, other_version=key_versions)
def test_other_key_version_is_rejected(
    key: bytes, plaintext: bytes, aad: bytes, key_version: int, other_version: int
) -> None:
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=key_version)
    if other_version == key_version:
        other_version = (key_version + 1) % 2**32
    with pytest.raises(DecryptionError):
        envelope.open_envelope(key, sealed, aad, key_version=other_version)
    # Rewriting the claimed version in the header does not help either.
    relabelled = sealed[:4] + other_version.to_bytes(4, "big") + sealed[8:]
    assert envelope.envelope_key_version(relabelled) == other_version
    with pytest.raises(DecryptionError):
        envelope.open_envelope(key, relabelled, aad, key_version=other_version)


@PROPERTY
@given(key=keys, other_key=keys, plaintext=plaintexts, aad=aads, key_version=key_versions)
def test_other_key_is_rejected(
    key: bytes, other_key: bytes, plaintext: bytes, aad: bytes, key_version: int
) -> None:
    if other_key == key:
        other_key = bytes([key[0] ^ 1]) + key[1:]
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=key_version)
    with pytest.raises(DecryptionError):
        envelope.open_envelope(other_key, sealed, aad, key_version=key_version)


class _AeadReachedError(AssertionError):
    pass


def _aead_must_not_run(_key: bytes) -> object:
    raise _AeadReachedError("AES-GCM was reached: the commitment check did not reject")


@PROPERTY
@given(key=keys, other_key=keys, plaintext=plaintexts, aad=aads)
def test_wrong_key_fails_at_the_commitment_check(
    key: bytes, other_key: bytes, plaintext: bytes, aad: bytes
) -> None:
    if other_key == key:
        other_key = bytes([key[0] ^ 1]) + key[1:]
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=3)
    with mock.patch.object(envelope, "AESGCM", side_effect=_aead_must_not_run):
        with pytest.raises(DecryptionError):
            envelope.open_envelope(other_key, sealed, aad, key_version=3)
        with pytest.raises(DecryptionError):
            envelope.open_envelope(key, sealed, aad + b"!", key_version=3)
        # Control: with the right key and AAD the commitment passes and AES-GCM is reached.
        with pytest.raises(_AeadReachedError):
            envelope.open_envelope(key, sealed, aad, key_version=3)


@PROPERTY
@given(key=keys, other_key=keys, plaintext=plaintexts, aad=aads, data=st.data())
def test_tampered_commitment_is_rejected(
    key: bytes, other_key: bytes, plaintext: bytes, aad: bytes, data: st.DataObject
) -> None:
    sealed = envelope.seal_envelope(key, plaintext, aad, key_version=1)
    start = envelope.HEADER_BYTES - envelope.COMMITMENT_BYTES
    commitment = sealed[start : envelope.HEADER_BYTES]
    replacement = data.draw(
        st.binary(min_size=32, max_size=32).filter(lambda c: c != commitment), label="commitment"
    )
    tampered = sealed[:start] + replacement + sealed[envelope.HEADER_BYTES :]
    with (
        mock.patch.object(envelope, "AESGCM", side_effect=_aead_must_not_run),
        pytest.raises(DecryptionError),
    ):
        envelope.open_envelope(key, tampered, aad, key_version=1)
    # An envelope re-labelled with the commitment another key would produce, so that the
    # commitment check passes for that key, still fails: AES-GCM authenticates the header.
    salt = sealed[8:start]
    if other_key == key:
        other_key = bytes([key[0] ^ 1]) + key[1:]
    _, _, other_commitment = envelope._derive(other_key, salt, aad)
    relabelled = sealed[:start] + other_commitment + sealed[envelope.HEADER_BYTES :]
    for candidate in (key, other_key):
        with pytest.raises(DecryptionError):
            envelope.open_envelope(candidate, relabelled, aad, key_version=1)


@pytest.mark.parametrize("prefix", [b"DLF\x01", b"DLE\x02", b"DLE\x00", b"XXXX"])
def test_bad_magic_or_format_is_rejected(prefix: bytes) -> None:
    key = bytes(32)
    sealed = envelope.seal_envelope(key, b"x", b"aad", key_version=1)
    with pytest.raises(DecryptionError):
        envelope.envelope_key_version(prefix + sealed[4:])
    with pytest.raises(DecryptionError):
        envelope.open_envelope(key, prefix + sealed[4:], b"aad", key_version=1)


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_data_keys_must_be_32_bytes(length: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        envelope.seal_envelope(bytes(length), b"x", b"", key_version=1)


def test_new_data_keys_are_random_and_32_bytes() -> None:
    generated = {envelope.new_data_key() for _ in range(16)}
    assert len(generated) == 16
    assert {len(k) for k in generated} == {32}
