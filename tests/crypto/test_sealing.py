"""Property tests for HPKE sealing with the hybrid ML-KEM-768 + X25519 KEM (app.crypto.sealing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto import sealing
from app.crypto.binding import BindingPart
from app.crypto.errors import DecryptionError

# ML-KEM is slower than AES; keep the example counts modest.
PROPERTY = settings(max_examples=30, deadline=None, database=None)

# Encapsulated key: 1088-byte ML-KEM-768 ciphertext + 32-byte X25519 ephemeral key.
ENC_BYTES = 1088 + 32
OVERHEAD_BYTES = len(sealing.SEALED_MAGIC) + ENC_BYTES + 16

parts = st.one_of(
    st.text(max_size=24),
    st.binary(max_size=24),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
contexts = st.lists(parts, max_size=5).map(tuple)
plaintexts = st.binary(max_size=512)


@PROPERTY
@given(plaintext=plaintexts, context=contexts)
def test_round_trip(
    hybrid_key: sealing.PrivateKey, plaintext: bytes, context: tuple[BindingPart, ...]
) -> None:
    sealed = sealing.seal_to(hybrid_key.public_key(), plaintext, *context)
    assert sealed.startswith(sealing.SEALED_MAGIC)
    assert len(sealed) == OVERHEAD_BYTES + len(plaintext)
    assert sealing.open_sealed(hybrid_key, sealed, *context) == plaintext


@PROPERTY
@given(plaintext=plaintexts, context=contexts)
def test_sealing_is_randomized(
    hybrid_key: sealing.PrivateKey, plaintext: bytes, context: tuple[BindingPart, ...]
) -> None:
    public = hybrid_key.public_key()
    assert sealing.seal_to(public, plaintext, *context) != sealing.seal_to(public, plaintext, *context)


@PROPERTY
@given(plaintext=plaintexts, context=contexts, other=contexts)
def test_other_context_is_rejected(
    hybrid_key: sealing.PrivateKey,
    plaintext: bytes,
    context: tuple[BindingPart, ...],
    other: tuple[BindingPart, ...],
) -> None:
    if other == context:
        other = (*context, "x")
    sealed = sealing.seal_to(hybrid_key.public_key(), plaintext, *context)
    with pytest.raises(DecryptionError):
        sealing.open_sealed(hybrid_key, sealed, *other)


@pytest.mark.parametrize(
    "other",
    [
        ("data-key", "row-2", 1),  # another row id
        ("grant", "row-1", 1),  # another purpose
        ("data-key", "row-1", 2),  # another key version
        ("data-key", "row-1"),  # a part dropped
        ("data-key", "row-1", 1, ""),  # a part added
        ("data-key", "row-1", "1"),  # same text, another type
        ("data-key", b"row-1", 1),
        ("data-keyrow-1", 1),  # concatenation must not collide
    ],
)
def test_swapped_info_context_is_rejected(
    hybrid_key: sealing.PrivateKey, other: tuple[BindingPart, ...]
) -> None:
    sealed = sealing.seal_to(hybrid_key.public_key(), b"data key", "data-key", "row-1", 1)
    assert sealing.open_sealed(hybrid_key, sealed, "data-key", "row-1", 1) == b"data key"
    with pytest.raises(DecryptionError):
        sealing.open_sealed(hybrid_key, sealed, *other)


@PROPERTY
@given(plaintext=plaintexts, context=contexts, data=st.data())
def test_any_bit_flip_is_rejected(
    hybrid_key: sealing.PrivateKey, plaintext: bytes, context: tuple[BindingPart, ...], data: st.DataObject
) -> None:
    sealed = bytearray(sealing.seal_to(hybrid_key.public_key(), plaintext, *context))
    bit = data.draw(st.integers(min_value=0, max_value=len(sealed) * 8 - 1), label="bit")
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionError):
        sealing.open_sealed(hybrid_key, bytes(sealed), *context)


@pytest.mark.parametrize("region", ["magic", "mlkem", "x25519", "x25519_top_bit", "ciphertext"])
def test_bit_flip_in_each_region_is_rejected(hybrid_key: sealing.PrivateKey, region: str) -> None:
    magic = len(sealing.SEALED_MAGIC)
    # The top bit of an X25519 u-coordinate is ignored by the scalar multiplication, so a flip
    # there is only caught because the hybrid KEM hashes the ephemeral key into the secret.
    positions = {
        "magic": 0,
        "mlkem": magic + 500,
        "x25519": magic + 1088 + 3,
        "x25519_top_bit": magic + ENC_BYTES - 1,
        "ciphertext": magic + ENC_BYTES + 2,
    }
    sealed = bytearray(sealing.seal_to(hybrid_key.public_key(), b"plaintext", "ctx"))
    sealed[positions[region]] ^= 0x80
    with pytest.raises(DecryptionError):
        sealing.open_sealed(hybrid_key, bytes(sealed), "ctx")


@pytest.mark.parametrize(
    "point",
    [
        bytes(32),  # 0
        (1).to_bytes(32, "little"),
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p - 1
        bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p
    ],
)
def test_low_order_ephemeral_x25519_keys_are_rejected(hybrid_key: sealing.PrivateKey, point: bytes) -> None:
    sealed = bytearray(sealing.seal_to(hybrid_key.public_key(), b"plaintext", "ctx"))
    start = len(sealing.SEALED_MAGIC) + 1088
    sealed[start : start + 32] = point
    with pytest.raises(DecryptionError):
        sealing.open_sealed(hybrid_key, bytes(sealed), "ctx")


@PROPERTY
@given(plaintext=plaintexts, context=contexts, data=st.data())
def test_truncation_is_rejected(
    hybrid_key: sealing.PrivateKey, plaintext: bytes, context: tuple[BindingPart, ...], data: st.DataObject
) -> None:
    sealed = sealing.seal_to(hybrid_key.public_key(), plaintext, *context)
    cut = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1), label="cut")
    with pytest.raises(DecryptionError):
        sealing.open_sealed(hybrid_key, sealed[:cut], *context)


@PROPERTY
@given(plaintext=plaintexts, context=contexts)
def test_other_key_pair_is_rejected(
    hybrid_key: sealing.PrivateKey,
    other_hybrid_key: sealing.PrivateKey,
    plaintext: bytes,
    context: tuple[BindingPart, ...],
) -> None:
    sealed = sealing.seal_to(hybrid_key.public_key(), plaintext, *context)
    with pytest.raises(DecryptionError):
        sealing.open_sealed(other_hybrid_key, sealed, *context)


@PROPERTY
@given(
    secret=st.binary(min_size=14, max_size=64),
    purpose=st.text(max_size=16),
    other_purpose=st.text(max_size=16),
)
def test_derived_keys_are_deterministic_and_separated(
    secret: bytes, purpose: str, other_purpose: str
) -> None:
    key = sealing.derive_private_key(secret, purpose)
    assert key.raw == sealing.derive_private_key(secret, purpose).raw
    if other_purpose != purpose:
        assert key.raw != sealing.derive_private_key(secret, other_purpose).raw
    sealed = sealing.seal_to(key.public_key(), b"reply", "reply", "tip-1")
    assert sealing.open_sealed(key, sealed, "reply", "tip-1") == b"reply"


def test_key_pairs_are_fresh_and_well_formed(
    hybrid_key: sealing.PrivateKey, other_hybrid_key: sealing.PrivateKey
) -> None:
    assert hybrid_key.raw != other_hybrid_key.raw
    assert len(hybrid_key.raw) == sealing.PRIVATE_KEY_BYTES == 96
    assert len(hybrid_key.public_key().raw) == sealing.PUBLIC_KEY_BYTES == 1216
    assert sealing.PrivateKey(hybrid_key.raw).public_key() == hybrid_key.public_key()


def test_private_key_repr_is_redacted(hybrid_key: sealing.PrivateKey) -> None:
    shown = repr(hybrid_key) + str(hybrid_key) + f"{hybrid_key!r}"
    assert "redacted" in shown
    assert hybrid_key.raw.hex() not in shown
    assert str(hybrid_key.raw) not in shown


@pytest.mark.parametrize("length", [0, 95, 97])
def test_key_lengths_are_checked(length: int) -> None:
    with pytest.raises(ValueError, match="96 bytes"):
        sealing.PrivateKey(bytes(length))
    with pytest.raises(ValueError, match="1216 bytes"):
        sealing.PublicKey(bytes(length + 1120))
