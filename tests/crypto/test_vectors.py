"""Known-answer tests against tests/crypto/vectors.json (see generate_vectors.py).

Where practical each vector is also recomputed here from the primitives
(`cryptography`, argon2-cffi) following the documented format, so a vector
proves the format rather than merely the code's past output.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from app.crypto import binding, envelope, human_codes, kdf, sealing, streaming
from app.crypto.errors import DecryptionError


def unhex(value: str) -> bytes:
    return bytes.fromhex(value)


def stream_plaintext(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


def decode_part(encoded: dict[str, Any]) -> binding.BindingPart:
    ((kind, value),) = encoded.items()
    decoded: binding.BindingPart = {"s": str, "b": bytes.fromhex, "i": int}[kind](value)
    return decoded


# --- binding -----------------------------------------------------------------


def test_binding_vectors(vectors: dict[str, Any]) -> None:
    assert len(vectors["binding"]) >= 5
    for case in vectors["binding"]:
        parts = [decode_part(p) for p in case["parts"]]
        assert binding.bind(*parts).hex() == case["encoded"], parts


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        # Written out by hand: tag | u32 big-endian length | raw.
        ((), b""),
        (("a",), b"s\x00\x00\x00\x01a"),
        ((b"a",), b"b\x00\x00\x00\x01a"),
        ((258,), b"i\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x01\x02"),
        ((-2,), b"i\x00\x00\x00\x08\xff\xff\xff\xff\xff\xff\xff\xfe"),
        (("ab", "c"), b"s\x00\x00\x00\x02abs\x00\x00\x00\x01c"),
        (("a", "bc"), b"s\x00\x00\x00\x01as\x00\x00\x00\x02bc"),
        (("é",), b"s\x00\x00\x00\x02\xc3\xa9"),
    ],
)
def test_binding_exact_encoding(parts: tuple[binding.BindingPart, ...], expected: bytes) -> None:
    assert binding.bind(*parts) == expected


@pytest.mark.parametrize("bad", [True, False, 1.0, None, bytearray(b"x"), 2**63, -(2**63) - 1])
def test_binding_refuses_ambiguous_or_unencodable_parts(bad: object) -> None:
    with pytest.raises((TypeError, OverflowError)):
        binding.bind(bad)  # type: ignore[arg-type]


# --- envelope ----------------------------------------------------------------


def reference_envelope(key: bytes, salt: bytes, plaintext: bytes, aad: bytes, key_version: int) -> bytes:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=32 + 12 + 32,
        salt=salt,
        info=b"s\x00\x00\x00\x14daylight/envelope/v1" + b"b" + struct.pack(">I", len(aad)) + aad,
    ).derive(key)
    enc_key, nonce, commitment = okm[:32], okm[32:44], okm[44:]
    header = b"DLE\x01" + struct.pack(">I", key_version) + salt + commitment
    return header + AESGCM(enc_key).encrypt(nonce, plaintext, header + aad)


def test_envelope_vectors(vectors: dict[str, Any]) -> None:
    assert len(vectors["envelope"]) >= 2
    for case in vectors["envelope"]:
        key, salt, aad = unhex(case["data_key"]), unhex(case["salt"]), unhex(case["aad"])
        plaintext, expected = unhex(case["plaintext"]), unhex(case["envelope"])
        key_version = case["key_version"]
        sealed = envelope.seal_envelope_with_salt(key, plaintext, aad, key_version=key_version, salt=salt)
        assert sealed.hex() == case["envelope"]
        assert reference_envelope(key, salt, plaintext, aad, key_version) == expected
        assert len(expected) == envelope.OVERHEAD_BYTES + len(plaintext)
        assert envelope.envelope_key_version(expected) == key_version
        assert envelope.open_envelope(key, expected, aad, key_version=key_version) == plaintext


def test_envelope_vector_is_salted(vectors: dict[str, Any]) -> None:
    case = vectors["envelope"][1]
    key, aad = unhex(case["data_key"]), unhex(case["aad"])
    plaintext = unhex(case["plaintext"])
    fresh = envelope.seal_envelope(key, plaintext, aad, key_version=case["key_version"])
    assert fresh.hex() != case["envelope"]
    assert envelope.open_envelope(key, fresh, aad, key_version=case["key_version"]) == plaintext


# --- streaming ---------------------------------------------------------------


def reference_stream(key: bytes, salt: bytes, prefix: bytes, aad: bytes, plaintext: bytes) -> bytes:
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=64,
        salt=salt,
        info=b"s\x00\x00\x00\x12daylight/stream/v1" + b"b" + struct.pack(">I", len(aad)) + aad,
    ).derive(key)
    aead = AESGCM(okm[:32])
    header = b"DLS\x01" + salt + okm[32:] + prefix
    chunk = 64 * 1024
    pieces = [plaintext[i : i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    out = [header]
    for counter, piece in enumerate(pieces):
        final = counter == len(pieces) - 1
        nonce = prefix + struct.pack(">IB", counter, int(final))
        out.append(aead.encrypt(nonce, piece, header))
    return b"".join(out)


def test_streaming_vectors(vectors: dict[str, Any]) -> None:
    cases = vectors["streaming"]
    assert [c["plaintext_length"] for c in cases] == [0, 1, 65536, 2 * 65536 + 5]
    for case in cases:
        key, salt, aad = unhex(case["data_key"]), unhex(case["salt"]), unhex(case["aad"])
        prefix = unhex(case["nonce_prefix"])
        plaintext = stream_plaintext(case["plaintext_length"])
        encryptor = streaming.StreamEncryptor(key, aad, salt=salt, nonce_prefix=prefix)
        blob = encryptor.header + encryptor.update(plaintext) + encryptor.finalize()

        assert encryptor.header.hex() == case["header"]
        assert len(blob) == case["ciphertext_length"]
        assert hashlib.sha256(blob).hexdigest() == case["ciphertext_sha256"]
        if "ciphertext" in case:
            assert blob.hex() == case["ciphertext"]
        assert reference_stream(key, salt, prefix, aad, plaintext) == blob

        decryptor = streaming.StreamDecryptor(key, aad)
        assert decryptor.update(blob) + decryptor.finalize() == plaintext


def test_streaming_small_vectors_are_stored_in_full(vectors: dict[str, Any]) -> None:
    small = [c for c in vectors["streaming"] if c["plaintext_length"] <= 1]
    assert len(small) == 2
    for case in small:
        blob = unhex(case["ciphertext"])
        assert len(blob) == streaming.HEADER_BYTES + case["plaintext_length"] + 16
        decryptor = streaming.StreamDecryptor(unhex(case["data_key"]), unhex(case["aad"]))
        assert decryptor.update(blob) + decryptor.finalize() == stream_plaintext(case["plaintext_length"])


# --- kdf -----------------------------------------------------------------------


def test_kdf_vectors(vectors: dict[str, Any]) -> None:
    cases = vectors["kdf"]
    assert {c["memory_cost_kib"] for c in cases} >= {8, 64}
    for case in cases:
        params = kdf.Argon2Parameters(case["time_cost"], case["memory_cost_kib"], case["parallelism"])
        keys = kdf.derive_login_keys(case["password"], unhex(case["salt"]), params)
        assert keys.verifier.hex() == case["verifier"]
        assert keys.key_encryption_key.hex() == case["key_encryption_key"]

        # Independent recomputation from argon2-cffi and HKDF-Expand.
        master = hash_secret_raw(
            secret=case["password"].encode("utf-8"),
            salt=unhex(case["salt"]),
            time_cost=case["time_cost"],
            memory_cost=case["memory_cost_kib"],
            parallelism=case["parallelism"],
            hash_len=32,
            type=Type.ID,
        )
        for purpose, field in (("verifier", "verifier"), ("key-encryption", "key_encryption_key")):
            expanded = HKDFExpand(
                algorithm=hashes.SHA256(), length=32, info=binding.bind("daylight/login/v1", purpose)
            ).derive(master)
            assert expanded.hex() == case[field], (purpose, case["memory_cost_kib"])


def test_kdf_vectors_depend_on_memory_cost(vectors: dict[str, Any]) -> None:
    by_memory = {c["memory_cost_kib"]: c for c in vectors["kdf"][:2]}
    assert by_memory[8]["password"] == by_memory[64]["password"]
    assert by_memory[8]["salt"] == by_memory[64]["salt"]
    assert by_memory[8]["verifier"] != by_memory[64]["verifier"]


# --- sealing -----------------------------------------------------------------


def test_derived_key_pair_vectors(vectors: dict[str, Any]) -> None:
    cases = vectors["sealing"]["derive"]
    assert len({c["public_key_sha256"] for c in cases}) == len(cases)
    for case in cases:
        secret = unhex(case["secret"])
        private_key = sealing.derive_private_key(secret, case["purpose"])
        assert private_key.raw.hex() == case["private_key"]
        public = private_key.public_key().raw
        assert hashlib.sha256(public).hexdigest() == case["public_key_sha256"]

        # Independent recomputation: HKDF-SHA256 (no salt) -> ML-KEM seed || X25519 key.
        seed = HKDF(
            algorithm=hashes.SHA256(),
            length=96,
            salt=None,
            info=binding.bind("daylight/keypair/v1", case["purpose"]),
        ).derive(secret)
        assert seed.hex() == case["private_key"]
        kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]).public_key()
        dh = x25519.X25519PrivateKey.from_private_bytes(seed[64:]).public_key()
        assert public == kem.public_bytes_raw() + dh.public_bytes_raw()
        assert len(public) == sealing.PUBLIC_KEY_BYTES


def test_stored_sealed_blob_still_opens(vectors: dict[str, Any]) -> None:
    case = vectors["sealing"]["sealed"]
    private_key = sealing.derive_private_key(unhex(case["secret"]), case["purpose"])
    assert private_key.raw.hex() == case["private_key"]
    stored_key = sealing.PrivateKey(unhex(case["private_key"]))
    context = [decode_part(p) for p in case["context"]]
    blob = unhex(case["sealed"])
    assert blob.startswith(sealing.SEALED_MAGIC)
    for key in (private_key, stored_key):
        assert sealing.open_sealed(key, blob, *context) == unhex(case["plaintext"])
    with pytest.raises(DecryptionError):
        sealing.open_sealed(private_key, blob, *context[:-1], context[-1] + 1)


def test_derive_private_key_refuses_short_secrets() -> None:
    with pytest.raises(ValueError, match="112 bits"):
        sealing.derive_private_key(bytes(13), "receipt")
    assert (
        sealing.derive_private_key(bytes(14), "receipt").raw
        != sealing.derive_private_key(bytes(15), "receipt").raw
    )


# --- human codes -------------------------------------------------------------


def test_human_code_vectors(vectors: dict[str, Any]) -> None:
    cases = vectors["human_codes"]
    assert any(c["expected"] is None for c in cases)
    for case in cases:
        assert human_codes.normalize(case["typed"], length=case["length"]) == case["expected"], case["typed"]


@pytest.mark.parametrize(
    ("typed", "length", "expected"),
    [
        ("abcd", 4, "ABCD"),
        ("a b c d", 4, "ABCD"),
        ("ab-cd", 4, "ABCD"),
        ("ab\u2010cd", 4, "ABCD"),
        ("ab\u2014cd", 4, "ABCD"),
        ("ＡＢＣ１", 4, "ABC1"),
        ("ilo0", 4, "1100"),
        ("ILOO", 4, "1100"),
        ("abc", 4, None),
        ("abcde", 4, None),
        ("ABCU", 4, None),
        ("uuuu", 4, None),
    ],
)
def test_human_code_normalize(typed: str, length: int, expected: str | None) -> None:
    assert human_codes.normalize(typed, length=length) == expected
