"""Property tests for the STREAM chunked AEAD (app.crypto.streaming).

Every rejection is checked through both consumers: `decrypt_chunks` (drained
into a list inside ``pytest.raises``) and a `StreamDecryptor` fed in uneven
pieces. Plaintext released before the error must be a prefix of the genuine
plaintext: a forged stream may be cut short, never altered.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from itertools import combinations, pairwise

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.crypto import streaming
from app.crypto.binding import bind
from app.crypto.errors import DecryptionError
from app.crypto.streaming import (
    CHUNK_BYTES,
    HEADER_BYTES,
    SEALED_CHUNK_BYTES,
    StreamDecryptor,
    StreamEncryptor,
    decrypt_chunks,
)

PROPERTY = settings(max_examples=50, deadline=None, database=None)
TAMPER = settings(max_examples=60, deadline=None, database=None)

KEY = bytes(range(32))
AAD = bind("daylight/contract/v1", "StreamColumn", "tip_attachments", "blob", "att-1", 1)
BOUNDARY_SIZES = [
    0,
    1,
    CHUNK_BYTES - 1,
    CHUNK_BYTES,
    CHUNK_BYTES + 1,
    2 * CHUNK_BYTES,
    2 * CHUNK_BYTES + 1,
    3 * CHUNK_BYTES,
]
# Near a chunk boundary (k * 64 KiB + small delta) or anywhere within up to 3 chunks.
sizes = st.one_of(
    st.sampled_from(BOUNDARY_SIZES),
    st.builds(
        lambda k, delta: max(0, k * CHUNK_BYTES + delta),
        st.integers(min_value=0, max_value=3),
        st.integers(min_value=-2, max_value=2),
    ),
    st.builds(
        lambda k, offset: k * CHUNK_BYTES + offset,
        st.integers(min_value=0, max_value=2),
        st.integers(1, CHUNK_BYTES),
    ),
)


def payload(length: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(seed.to_bytes(8, "big")).digest(length)


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def encrypt(plaintext: bytes, *, key: bytes = KEY, aad: bytes = AAD, cuts: list[int] | None = None) -> bytes:
    encryptor = StreamEncryptor(key, aad)
    out = [encryptor.header]
    for piece in pieces(plaintext, cuts or []):
        sealed = encryptor.update(piece)
        assert len(sealed) % SEALED_CHUNK_BYTES == 0  # only whole chunks leave early
        out.append(sealed)
    out.append(encryptor.finalize())
    return b"".join(out)


def split(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_BYTES:]
    return blob[:HEADER_BYTES], [
        body[i : i + SEALED_CHUNK_BYTES] for i in range(0, len(body), SEALED_CHUNK_BYTES)
    ]


def decrypt(blob: bytes, *, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    return b"".join(decrypt_chunks(io.BytesIO(blob), key, aad))


def assert_rejected(blob: bytes, genuine: bytes, *, key: bytes = KEY, aad: bytes = AAD) -> None:
    released = []
    with pytest.raises(DecryptionError):
        released.extend(decrypt_chunks(io.BytesIO(blob), key, aad))
    assert genuine.startswith(b"".join(released))

    decryptor = StreamDecryptor(key, aad)
    fed = bytearray()
    with pytest.raises(DecryptionError):  # noqa: PT012 - the error may come from any call
        for piece in pieces(blob, list(range(0, len(blob), 40_000))):
            fed += decryptor.update(piece)
        fed += decryptor.finalize()
    assert genuine.startswith(bytes(fed))


def chunk_count(length: int) -> int:
    return max(1, -(-length // CHUNK_BYTES))


# --- round trips -------------------------------------------------------------


@PROPERTY
@given(length=sizes, seed=st.integers(0, 2**63), data=st.data())
def test_round_trip_with_arbitrary_splits(length: int, seed: int, data: st.DataObject) -> None:
    event(f"{chunk_count(length)} chunk(s)")
    plaintext = payload(length, seed)
    cut_points = st.lists(st.integers(min_value=0, max_value=length), max_size=8)
    blob = encrypt(plaintext, cuts=data.draw(cut_points, label="encrypt cuts"))
    assert len(blob) == HEADER_BYTES + length + 16 * chunk_count(length)
    header, chunks = split(blob)
    assert header[:4] == b"DLS\x01"
    assert len(chunks) == chunk_count(length)

    assert decrypt(blob) == plaintext
    decryptor = StreamDecryptor(KEY, AAD)
    out = bytearray()
    blob_cuts = data.draw(
        st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=8), label="decrypt cuts"
    )
    for piece in pieces(blob, blob_cuts):
        out += decryptor.update(piece)
    out += decryptor.finalize()
    assert bytes(out) == plaintext


@pytest.mark.parametrize("length", BOUNDARY_SIZES)
def test_round_trip_at_chunk_boundaries(length: int) -> None:
    plaintext = payload(length, length)
    blob = encrypt(plaintext)
    _, chunks = split(blob)
    assert len(chunks) == chunk_count(length)
    assert [len(c) for c in chunks[:-1]] == [SEALED_CHUNK_BYTES] * (len(chunks) - 1)
    assert len(chunks[-1]) == length - CHUNK_BYTES * (len(chunks) - 1) + 16
    sink = io.BytesIO()
    assert streaming.encrypt_file(io.BytesIO(plaintext), sink, KEY, AAD) == length
    for candidate in (blob, sink.getvalue()):
        released = list(decrypt_chunks(io.BytesIO(candidate), KEY, AAD))
        assert b"".join(released) == plaintext
        assert all(len(c) <= CHUNK_BYTES for c in released)


def test_two_encryptions_differ() -> None:
    plaintext = payload(1000)
    first, second = encrypt(plaintext), encrypt(plaintext)
    assert first[:HEADER_BYTES] != second[:HEADER_BYTES]
    assert first[HEADER_BYTES:] != second[HEADER_BYTES:]


# --- tampering ---------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    plaintext: bytes
    blob: bytes
    header: bytes
    chunks: list[bytes]


@pytest.fixture(scope="module")
def sample() -> Sample:
    """Four chunks: three full non-final ones and a short final one."""
    plaintext = payload(3 * CHUNK_BYTES + 123, seed=7)
    blob = encrypt(plaintext)
    header, chunks = split(blob)
    assert len(chunks) == 4
    return Sample(plaintext, blob, header, chunks)


@pytest.fixture(scope="module")
def full_sample() -> Sample:
    """Two full chunks: the final chunk is as long as the others."""
    plaintext = payload(2 * CHUNK_BYTES, seed=8)
    blob = encrypt(plaintext)
    header, chunks = split(blob)
    assert [len(c) for c in chunks] == [SEALED_CHUNK_BYTES] * 2
    return Sample(plaintext, blob, header, chunks)


def test_samples_open(sample: Sample, full_sample: Sample) -> None:
    assert decrypt(sample.blob) == sample.plaintext
    assert decrypt(full_sample.blob) == full_sample.plaintext


def test_reordered_chunks_are_rejected(sample: Sample, full_sample: Sample) -> None:
    for source in (sample, full_sample):
        for i, j in combinations(range(len(source.chunks)), 2):
            chunks = list(source.chunks)
            chunks[i], chunks[j] = chunks[j], chunks[i]
            assert_rejected(source.header + b"".join(chunks), source.plaintext)


def test_dropping_the_final_chunk_is_rejected(sample: Sample, full_sample: Sample) -> None:
    for source in (sample, full_sample):
        truncated = source.header + b"".join(source.chunks[:-1])
        # Cut exactly at a chunk boundary: only the final flag can tell.
        assert (len(truncated) - HEADER_BYTES) % SEALED_CHUNK_BYTES == 0
        assert_rejected(truncated, source.plaintext)


def test_dropping_or_duplicating_any_chunk_is_rejected(sample: Sample) -> None:
    for i in range(len(sample.chunks)):
        dropped = sample.chunks[:i] + sample.chunks[i + 1 :]
        assert_rejected(sample.header + b"".join(dropped), sample.plaintext)
        duplicated = sample.chunks[: i + 1] + sample.chunks[i:]
        assert_rejected(sample.header + b"".join(duplicated), sample.plaintext)


@pytest.mark.parametrize(
    "cut",
    [
        0,
        1,
        HEADER_BYTES - 1,
        HEADER_BYTES,
        HEADER_BYTES + 15,
        HEADER_BYTES + 16,
        HEADER_BYTES + SEALED_CHUNK_BYTES - 1,
        HEADER_BYTES + SEALED_CHUNK_BYTES,
        HEADER_BYTES + SEALED_CHUNK_BYTES + 1,
    ],
)
def test_truncation_at_fixed_points_is_rejected(sample: Sample, cut: int) -> None:
    assert_rejected(sample.blob[:cut], sample.plaintext)


@TAMPER
@given(data=st.data())
def test_truncation_anywhere_is_rejected(sample: Sample, full_sample: Sample, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from([sample, full_sample]), label="sample")
    cut = data.draw(st.integers(min_value=0, max_value=len(source.blob) - 1), label="cut")
    assert_rejected(source.blob[:cut], source.plaintext)


def test_truncation_of_a_single_chunk_stream_is_rejected() -> None:
    for length in (0, 1, 100, CHUNK_BYTES):
        plaintext = payload(length)
        blob = encrypt(plaintext)
        for cut in sorted({0, HEADER_BYTES, HEADER_BYTES + 1, len(blob) - 1}):
            assert_rejected(blob[:cut], plaintext)


def test_appended_chunks_are_rejected(sample: Sample, full_sample: Sample) -> None:
    other = split(encrypt(payload(CHUNK_BYTES + 10, seed=9)))[1]
    for source in (sample, full_sample):
        extras = [*source.chunks, *other, b"\x00" * 16, b"\x00" * SEALED_CHUNK_BYTES]
        for extra in extras:
            assert_rejected(source.blob + extra, source.plaintext)


@TAMPER
@given(extra=st.binary(min_size=1, max_size=64))
def test_appended_bytes_are_rejected(sample: Sample, full_sample: Sample, extra: bytes) -> None:
    for source in (sample, full_sample):
        assert_rejected(source.blob + extra, source.plaintext)


@TAMPER
@given(data=st.data())
def test_any_bit_flip_is_rejected(sample: Sample, full_sample: Sample, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from([sample, full_sample]), label="sample")
    region = data.draw(st.sampled_from(["header", "anywhere"]), label="region")
    end = HEADER_BYTES if region == "header" else len(source.blob)
    bit = data.draw(st.integers(min_value=0, max_value=end * 8 - 1), label="bit")
    tampered = bytearray(source.blob)
    tampered[bit // 8] ^= 1 << (bit % 8)
    assert_rejected(bytes(tampered), source.plaintext)


def test_bit_flip_in_every_chunk_is_rejected(sample: Sample) -> None:
    for index in range(len(sample.chunks)):
        for offset in (0, len(sample.chunks[index]) // 2, len(sample.chunks[index]) - 1):
            chunks = [bytearray(c) for c in sample.chunks]
            chunks[index][offset] ^= 0x01
            assert_rejected(sample.header + b"".join(chunks), sample.plaintext)


def test_header_from_another_file_is_rejected(sample: Sample) -> None:
    # Same key, same AAD, same length: only the header differs.
    other_plaintext = payload(len(sample.plaintext), seed=99)
    other_header, other_chunks = split(encrypt(other_plaintext))
    assert_rejected(other_header + b"".join(sample.chunks), sample.plaintext)
    assert_rejected(sample.header + b"".join(other_chunks), other_plaintext)
    # Splicing chunks of two files under one header fails too.
    spliced = sample.header + sample.chunks[0] + other_chunks[1] + b"".join(sample.chunks[2:])
    assert_rejected(spliced, sample.plaintext)


def test_header_fields_are_all_authenticated(sample: Sample) -> None:
    fields = {"magic": 0, "format": 3, "salt": 4, "commitment": 36, "nonce_prefix": 68}
    for offset in fields.values():
        header = bytearray(sample.header)
        header[offset] ^= 0x40
        assert_rejected(bytes(header) + b"".join(sample.chunks), sample.plaintext)


@TAMPER
@given(aad=st.binary(max_size=64), data=st.data())
def test_wrong_aad_is_rejected(sample: Sample, full_sample: Sample, aad: bytes, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from([sample, full_sample]), label="sample")
    if aad == AAD:
        aad += b"\x00"
    assert_rejected(source.blob, source.plaintext, aad=aad)


@TAMPER
@given(key=st.binary(min_size=32, max_size=32))
def test_wrong_key_is_rejected(sample: Sample, key: bytes) -> None:
    if key == KEY:
        key = bytes(32)
    assert_rejected(sample.blob, sample.plaintext, key=key)


def test_wrong_key_is_rejected_before_any_chunk_is_opened(sample: Sample) -> None:
    decryptor = StreamDecryptor(bytes(32), AAD)
    with pytest.raises(DecryptionError):
        decryptor.update(sample.header)


# --- API misuse --------------------------------------------------------------


def test_encryptor_cannot_be_used_after_finalize() -> None:
    encryptor = StreamEncryptor(KEY, AAD)
    encryptor.finalize()
    with pytest.raises(ValueError, match="finalized"):
        encryptor.update(b"more")
    with pytest.raises(ValueError, match="finalized"):
        encryptor.finalize()


def test_decryptor_cannot_be_used_after_finalize() -> None:
    blob = encrypt(b"x")
    decryptor = StreamDecryptor(KEY, AAD)
    assert decryptor.update(blob) + decryptor.finalize() == b"x"
    with pytest.raises(ValueError, match="finalized"):
        decryptor.update(b"")
    with pytest.raises(ValueError, match="finalized"):
        decryptor.finalize()


@pytest.mark.parametrize(
    ("salt", "prefix"),
    [(bytes(31), bytes(7)), (bytes(33), bytes(7)), (bytes(32), bytes(6)), (bytes(32), bytes(8))],
)
def test_encryptor_checks_injected_lengths(salt: bytes, prefix: bytes) -> None:
    with pytest.raises(ValueError, match="length"):
        StreamEncryptor(KEY, AAD, salt=salt, nonce_prefix=prefix)
