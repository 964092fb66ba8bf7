"""Generate the known-answer vectors in ``tests/crypto/vectors.json``. Run by hand only.

Usage, from the project root::

    .venv/bin/python tests/crypto/generate_vectors.py           # check: compare, write nothing
    .venv/bin/python tests/crypto/generate_vectors.py --write   # (re)write vectors.json

The vectors pin the on-disk formats of `app.crypto`: envelopes, streams, login
keys, bindings, derived hybrid key pairs and HPKE sealed values. Every field
value already stored in a database depends on them, so a test failure against
these vectors is a format break to fix in the code, never a reason to
regenerate. Regenerate (``--write``) only for a deliberate format change, which
must also bump that format's version byte.

HPKE sealing is randomized, so the sealed blob cannot be recomputed: ``--write``
keeps the stored blob as long as it still opens, and seals a fresh one only
when there is none. The default check mode recomputes everything else and exits
non-zero on any difference.

The ``human_codes`` cases are written out by hand below (the expected values
are not computed by the code under test); the script only copies them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from app.crypto import binding, envelope, kdf, sealing, streaming

VECTORS_PATH = Path(__file__).with_name("vectors.json")
# Plaintexts of at least this many bytes are stored as a SHA-256, not in full.
STREAM_HASH_THRESHOLD = 1024
SEALED_PLAINTEXT = b"a 32-byte tip data key goes here"


def stream_plaintext(length: int) -> bytes:
    return bytes(i % 251 for i in range(length))


def encode_part(part: binding.BindingPart) -> dict[str, Any]:
    if isinstance(part, str):
        return {"s": part}
    if isinstance(part, bytes):
        return {"b": part.hex()}
    return {"i": part}


def decode_part(encoded: dict[str, Any]) -> binding.BindingPart:
    ((kind, value),) = encoded.items()
    if kind == "s":
        return str(value)
    if kind == "b":
        return bytes.fromhex(value)
    if kind == "i":
        return int(value)
    raise ValueError(f"unknown binding part kind {kind!r}")


BINDING_CASES: list[tuple[binding.BindingPart, ...]] = [
    (),
    ("",),
    ("a",),
    (b"a",),
    (1,),
    (-1,),
    ("ab", "c"),
    ("a", "bc"),
    ("daylight/login/v1", "verifier"),
    ("daylight/contract/v1", "EnvelopeColumn", "tips", "narrative_encrypted", "row-1", 1),
    ("é", b"\x00\xff", 2**63 - 1, -(2**63)),
]

ENVELOPE_KEY = bytes(range(32))
ENVELOPE_SALT = bytes(range(0x40, 0x60))
ENVELOPE_CASES: list[tuple[bytes, tuple[binding.BindingPart, ...], int]] = [
    (b"", ("daylight/contract/v1", "EnvelopeColumn", "tips", "narrative_encrypted", "r1", 1), 1),
    (b"hello, daylight", ("daylight/contract/v1", "EnvelopeColumn", "tips", "answers", "r2", 7), 7),
    ("Свидетельство №1 — 証言".encode(), (), 4_294_967_295),
]

STREAM_KEY = bytes(range(0x80, 0xA0))
STREAM_SALT = bytes(range(0xA0, 0xC0))
STREAM_NONCE_PREFIX = bytes.fromhex("00112233445566")
STREAM_AAD_PARTS: tuple[binding.BindingPart, ...] = (
    "daylight/contract/v1",
    "StreamColumn",
    "tip_attachments",
    "blob",
    "att-1",
    1,
)
STREAM_LENGTHS = [0, 1, streaming.CHUNK_BYTES, 2 * streaming.CHUNK_BYTES + 5]

KDF_CASES: list[tuple[str, bytes, kdf.Argon2Parameters]] = [
    ("correct horse battery staple", bytes(range(16)), kdf.Argon2Parameters(1, 8, 1)),
    ("correct horse battery staple", bytes(range(16)), kdf.Argon2Parameters(1, 64, 1)),
    ("pässwörd ✓", bytes(range(16, 32)), kdf.Argon2Parameters(1, 64, 1)),
]

DERIVE_CASES: list[tuple[bytes, str]] = [
    (b"daylight-kat-secret-0001", "receipt"),
    (b"daylight-kat-secret-0001", "recovery"),
    (bytes(range(14)), "receipt"),
]
SEALED_SECRET = b"daylight-kat-secret-0001"
SEALED_PURPOSE = "receipt"
SEALED_CONTEXT: tuple[binding.BindingPart, ...] = ("tips.sealed_data_key", "row-42", 1)

# (typed, length, expected) - expectations written by hand, not computed.
HUMAN_CODE_CASES: list[tuple[str, int, str | None]] = [
    ("ABCD-EFGH", 8, "ABCDEFGH"),
    ("abcd-efgh", 8, "ABCDEFGH"),
    ("ab cd  ef\tgh", 8, "ABCDEFGH"),
    (" abcd efgh ", 8, "ABCDEFGH"),
    ("ABCD\u2010EFGH", 8, "ABCDEFGH"),
    ("ABCD\u2014EFGH", 8, "ABCDEFGH"),
    ("AB-CD\u2013EF\u2014GH", 8, "ABCDEFGH"),
    ("ＡＢＣ１", 4, "ABC1"),
    ("ａｂｃ－ｄ", 4, "ABCD"),
    ("ＡＢ\u3000ＣＤ", 4, "ABCD"),
    ("IiLl", 4, "1111"),
    ("Oo0o", 4, "0000"),
    ("ILO0", 4, "1100"),
    ("ABC", 4, None),
    ("ABCDE", 4, None),
    ("", 4, None),
    ("----", 4, None),
    ("ABCU", 4, None),
    ("abcu", 4, None),
    ("AB*C", 4, None),
    ("AB_CD", 4, None),
]


def build(existing: dict[str, Any] | None) -> dict[str, Any]:
    vectors: dict[str, Any] = {}

    vectors["binding"] = [
        {"parts": [encode_part(p) for p in parts], "encoded": binding.bind(*parts).hex()}
        for parts in BINDING_CASES
    ]

    vectors["envelope"] = []
    for plaintext, aad_parts, key_version in ENVELOPE_CASES:
        aad = binding.bind(*aad_parts)
        sealed = envelope.seal_envelope_with_salt(
            ENVELOPE_KEY, plaintext, aad, key_version=key_version, salt=ENVELOPE_SALT
        )
        vectors["envelope"].append(
            {
                "data_key": ENVELOPE_KEY.hex(),
                "salt": ENVELOPE_SALT.hex(),
                "aad": aad.hex(),
                "key_version": key_version,
                "plaintext": plaintext.hex(),
                "envelope": sealed.hex(),
            }
        )

    vectors["streaming"] = []
    aad = binding.bind(*STREAM_AAD_PARTS)
    for length in STREAM_LENGTHS:
        encryptor = streaming.StreamEncryptor(
            STREAM_KEY, aad, salt=STREAM_SALT, nonce_prefix=STREAM_NONCE_PREFIX
        )
        blob = encryptor.header + encryptor.update(stream_plaintext(length)) + encryptor.finalize()
        case: dict[str, Any] = {
            "data_key": STREAM_KEY.hex(),
            "salt": STREAM_SALT.hex(),
            "nonce_prefix": STREAM_NONCE_PREFIX.hex(),
            "aad": aad.hex(),
            "plaintext_length": length,
            "plaintext": "bytes(i % 251 for i in range(plaintext_length))",
            "header": encryptor.header.hex(),
            "ciphertext_length": len(blob),
            "ciphertext_sha256": hashlib.sha256(blob).hexdigest(),
        }
        if length < STREAM_HASH_THRESHOLD:
            case["ciphertext"] = blob.hex()
        vectors["streaming"].append(case)

    vectors["kdf"] = []
    for password, salt, params in KDF_CASES:
        keys = kdf.derive_login_keys(password, salt, params)
        vectors["kdf"].append(
            {
                "password": password,
                "salt": salt.hex(),
                "time_cost": params.time_cost,
                "memory_cost_kib": params.memory_cost_kib,
                "parallelism": params.parallelism,
                "verifier": keys.verifier.hex(),
                "key_encryption_key": keys.key_encryption_key.hex(),
            }
        )

    derive = []
    for secret, purpose in DERIVE_CASES:
        private_key = sealing.derive_private_key(secret, purpose)
        derive.append(
            {
                "secret": secret.hex(),
                "purpose": purpose,
                "private_key": private_key.raw.hex(),
                "public_key_sha256": hashlib.sha256(private_key.public_key().raw).hexdigest(),
            }
        )
    private_key = sealing.derive_private_key(SEALED_SECRET, SEALED_PURPOSE)
    context = [encode_part(p) for p in SEALED_CONTEXT]
    sealed_blob: bytes | None = None
    if existing is not None:
        stored = existing["sealing"]["sealed"]
        candidate = bytes.fromhex(stored["sealed"])
        if (
            stored["private_key"] == private_key.raw.hex()
            and stored["context"] == context
            and sealing.open_sealed(private_key, candidate, *SEALED_CONTEXT) == SEALED_PLAINTEXT
        ):
            sealed_blob = candidate
    if sealed_blob is None:
        sealed_blob = sealing.seal_to(private_key.public_key(), SEALED_PLAINTEXT, *SEALED_CONTEXT)
    vectors["sealing"] = {
        "derive": derive,
        "sealed": {
            "secret": SEALED_SECRET.hex(),
            "purpose": SEALED_PURPOSE,
            "private_key": private_key.raw.hex(),
            "context": context,
            "plaintext": SEALED_PLAINTEXT.hex(),
            "sealed": sealed_blob.hex(),
        },
    }

    vectors["human_codes"] = [
        {"typed": typed, "length": length, "expected": expected}
        for typed, length, expected in HUMAN_CODE_CASES
    ]
    return vectors


def dump(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=2, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="(re)write vectors.json")
    args = parser.parse_args(argv)
    existing = json.loads(VECTORS_PATH.read_text()) if VECTORS_PATH.exists() else None
    text = dump(build(existing))
    if args.write:
        VECTORS_PATH.write_text(text)
        print(f"wrote {VECTORS_PATH}")
        return 0
    if existing is None or dump(existing) != text:
        print(f"{VECTORS_PATH} is missing or differs from the code's output", file=sys.stderr)
        return 1
    print(f"{VECTORS_PATH} matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
