"""Witness cosignatures: C2SP tlog-cosignature ``cosignature/v1`` over our checkpoints, with Ed25519.

A cosignature is one more signed-note signature line on a checkpoint, by a *witness* key instead of the
log key (c2sp.org/tlog-cosignature)::

    — witness.example/w1 base64(key ID (4) || timestamp (8, big-endian) || Ed25519 signature (64))

The witness signs ``"cosignature/v1\\n" + "time <timestamp>\\n" + <checkpoint body>``, the body being the
whole note text with our ``time`` extension line and its final newline. It states: "as of <timestamp>, the
largest tree of this log I have seen to be append-only has this root". The threat it answers is a split
view: the log operator (or whoever holds its key) signing one history for us and another for a court or a
journalist. A reader who requires cosignatures from witnesses it trusts knows that the tree it checks
against is the one those witnesses saw, and witnesses only cosign trees consistent with what they cosigned
before.

Key IDs use signature type 0x04, so a witness key can never be mistaken for a log key (type 0x01) even
under the same name, and a log signature line never counts as a cosignature. The Ed25519 message does not
commit to the witness name, so one public key must never serve two witness names: ``verify`` helpers take
keys as (name, key) pairs and callers should not configure a key twice.

Key formats follow Go's golang.org/x/mod/sumdb/note, with the cosignature type byte:

* verifier key: ``<name>+<key ID hex>+base64(0x04 || 32-byte public key)``
* signer key:   ``PRIVATE+KEY+<name>+<key ID hex>+base64(0x04 || 32-byte seed)``
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from hashlib import sha256
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.audit_log.checkpoint import (
    KEY_ID_SIZE,
    MAX_NUMBER,
    Checkpoint,
    CheckpointError,
    _check_key_name,
    _decode_canonical_base64,
    _parse_signature_line,
    _split_signed_note,
    checkpoint_body,
    signing_key_from_seed,
)

COSIGNATURE_TYPE = b"\x04"
TIMESTAMP_SIZE = 8
ED25519_SIGNATURE_SIZE = 64
# key ID || timestamp || Ed25519 signature: anything else under a known key is malformed.
COSIGNATURE_SIZE = KEY_ID_SIZE + TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE
COSIGNATURE_HEADER = "cosignature/v1\n"

_PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
_SIGNATURE_LINE_PREFIX = "\u2014 "  # em dash, space
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
_ED25519_KEY_SIZE = 32  # both the public key and the private seed


def cosignature_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || raw public key)[:4]: the key ID of a cosignature/v1 Ed25519 key."""
    _check_key_name(name, "the witness name")
    material = name.encode("utf-8") + b"\n" + COSIGNATURE_TYPE + public_key.public_bytes_raw()
    return sha256(material).digest()[:KEY_ID_SIZE]


class WitnessKey(NamedTuple):
    """A witness a reader trusts: its name and its Ed25519 cosigning public key."""

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        """The 4-byte signed-note key ID of this witness (type 0x04)."""
        return cosignature_key_id(self.name, self.public_key)


def witness_verifier_key(public_key: Ed25519PublicKey, name: str) -> str:
    """The C2SP vkey ``<name>+<key ID hex>+base64(0x04 || public key)`` readers pin for this witness."""
    key_id = cosignature_key_id(name, public_key)
    encoded = base64.b64encode(COSIGNATURE_TYPE + public_key.public_bytes_raw()).decode("ascii")
    return f"{name}+{key_id.hex()}+{encoded}"


def _split_key_text(text: str, what: str) -> tuple[str, bytes, bytes]:
    """(name, key ID, key material after the 0x04 type byte) of ``<name>+<hex ID>+<base64>``.

    Error messages never quote ``text``: for a signer key it is a secret.
    """
    # Names cannot contain '+' and IDs are hex, but standard base64 can: split at the first two only.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise CheckpointError(f"{what} is '<name>+<8 hex digits>+<base64 key>'")
    name, key_id_hex, encoded = parts
    _check_key_name(name, f"the {what} name")
    if _KEY_ID_HEX.fullmatch(key_id_hex) is None:
        raise CheckpointError(f"the {what} ID is 8 hex digits")
    key = _decode_canonical_base64(encoded, what)
    if key[:1] != COSIGNATURE_TYPE or len(key) != 1 + _ED25519_KEY_SIZE:
        raise CheckpointError(f"{what} must be a cosignature/v1 Ed25519 key (type 0x04, 32 bytes)")
    return name, bytes.fromhex(key_id_hex), key[1:]


def parse_witness_verifier_key(text: str) -> WitnessKey:
    """Inverse of ``witness_verifier_key``. Raises CheckpointError for a malformed string, a type byte other
    than 0x04 (a log's 0x01 key is refused: it signs checkpoints, not cosignatures), or a key ID that does
    not match the name and key."""
    if not isinstance(text, str):
        raise CheckpointError("a witness verifier key is text")
    name, key_id, raw_public_key = _split_key_text(text, "witness verifier key")
    key = WitnessKey(name=name, public_key=Ed25519PublicKey.from_public_bytes(raw_public_key))
    if key.key_id != key_id:
        raise CheckpointError("the witness verifier key ID does not match its name and key")
    return key


def generate_witness_signer(name: str) -> tuple[str, str]:
    """A fresh witness key: (signer key text, to keep secret; verifier key text, to publish)."""
    _check_key_name(name, "the witness name")
    private_key = Ed25519PrivateKey.generate()
    public_key = private_key.public_key()
    key_id = cosignature_key_id(name, public_key)
    encoded = base64.b64encode(COSIGNATURE_TYPE + private_key.private_bytes_raw()).decode("ascii")
    signer = f"{_PRIVATE_KEY_PREFIX}{name}+{key_id.hex()}+{encoded}"
    return signer, witness_verifier_key(public_key, name)


def parse_witness_signer(text: str) -> tuple[str, Ed25519PrivateKey]:
    """(witness name, private key) of a ``PRIVATE+KEY+...`` signer key. Raises CheckpointError if it is
    malformed, not type 0x04, or its key ID does not match (a truncated or hand-edited key file would
    otherwise sign under an ID no reader can match). Messages never quote the key."""
    if not isinstance(text, str) or not text.startswith(_PRIVATE_KEY_PREFIX):
        raise CheckpointError("a witness signer key starts with 'PRIVATE+KEY+'")
    name, key_id, seed = _split_key_text(text[len(_PRIVATE_KEY_PREFIX) :], "witness signer key")
    private_key = signing_key_from_seed(seed)
    if cosignature_key_id(name, private_key.public_key()) != key_id:
        raise CheckpointError("the witness signer key ID does not match its name and key")
    return name, private_key


def _check_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_NUMBER:
        raise CheckpointError(f"a cosignature timestamp is an integer from 0 to {MAX_NUMBER}")


def _signed_message(checkpoint: Checkpoint, timestamp: int) -> bytes:
    # The header line is domain separation: a cosignature can never pass as a log signature over some note.
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{checkpoint_body(checkpoint)}".encode()


def cosign(checkpoint: Checkpoint, private_key: Ed25519PrivateKey, name: str, timestamp: int) -> str:
    """One cosignature line (with its final newline) by the witness ``name`` over ``checkpoint``.

    Only call this once the checkpoint has been verified consistent with everything this witness cosigned
    before (``app.audit_log.witness.add_checkpoint``): the line is that promise.
    """
    _check_timestamp(timestamp)
    key_id = cosignature_key_id(name, private_key.public_key())
    signature = private_key.sign(_signed_message(checkpoint, timestamp))
    encoded = base64.b64encode(key_id + timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature).decode("ascii")
    return f"{_SIGNATURE_LINE_PREFIX}{name} {encoded}\n"


def _verify_cosignature(checkpoint: Checkpoint, key: WitnessKey, signature: bytes) -> int:
    """The timestamp of ``signature`` (key ID || timestamp || Ed25519) once it verifies by ``key``."""
    if len(signature) != COSIGNATURE_SIZE:
        raise CheckpointError(
            f"the cosignature by {key.name} is {len(signature)} bytes, not {COSIGNATURE_SIZE}"
        )
    timestamp = int.from_bytes(signature[KEY_ID_SIZE : KEY_ID_SIZE + TIMESTAMP_SIZE], "big")
    if timestamp > MAX_NUMBER:
        raise CheckpointError(f"the cosignature by {key.name} has a timestamp above 2^63 - 1")
    try:
        key.public_key.verify(
            signature[KEY_ID_SIZE + TIMESTAMP_SIZE :], _signed_message(checkpoint, timestamp)
        )
    except InvalidSignature:
        raise CheckpointError(f"the cosignature by {key.name} does not verify") from None
    return timestamp


def _parse_line(line: str) -> tuple[str, bytes]:
    """(key name, key ID || signature) of one signature line, with or without its final newline."""
    if not isinstance(line, str):
        raise CheckpointError("a signature line is text")
    return _parse_signature_line(line[:-1] if line.endswith("\n") else line)


def open_cosignature(checkpoint: Checkpoint, line: str, key: WitnessKey) -> int:
    """The timestamp of the cosignature ``line`` by ``key`` over ``checkpoint``.

    Raises CheckpointError if the line is malformed, is by another key (name or key ID differ), has the
    wrong length, a timestamp above 2^63 - 1, or a signature that does not verify.
    """
    name, signature = _parse_line(line)
    if name != key.name or signature[:KEY_ID_SIZE] != key.key_id:
        raise CheckpointError(f"the line is not a cosignature by the key {key.name}+{key.key_id.hex()}")
    return _verify_cosignature(checkpoint, key, signature)


def cosignatures_by(
    checkpoint: Checkpoint, signatures: str | Iterable[str], keys: Sequence[WitnessKey]
) -> dict[str, int]:
    """{witness name: timestamp} for each of ``keys`` with a valid cosignature on ``checkpoint``.

    ``signatures`` is either a whole signed note (its text must be this checkpoint's body) or signature
    lines. Lines by keys not in ``keys`` (the log's own signature, witnesses we do not trust, a name or ID
    that only half matches) are ignored, as the signed-note spec requires. A line that does match a trusted
    key but does not verify raises CheckpointError (the spec's "SHOULD reject the whole note"): a forged
    line under a trusted name is an attack worth reporting, not noise to skip. With several valid lines by
    one key, the latest timestamp is reported.
    """
    if isinstance(signatures, str):
        text, parsed = _split_signed_note(signatures)
        if text != checkpoint_body(checkpoint):
            raise CheckpointError("the note is not this checkpoint")
    else:
        parsed = [_parse_line(line) for line in signatures]
    trusted = {(key.name, key.key_id): key for key in keys}
    timestamps: dict[str, int] = {}
    for name, signature in parsed:
        key = trusted.get((name, signature[:KEY_ID_SIZE]))
        if key is None:
            continue
        timestamp = _verify_cosignature(checkpoint, key, signature)
        timestamps[name] = max(timestamp, timestamps.get(name, timestamp))
    return timestamps


def note_with_cosignatures(signed_note: str, lines: str | Iterable[str]) -> str:
    """``signed_note`` with the signature ``lines`` appended: the C2SP way to carry a checkpoint together
    with its cosignatures. ``open_signed_checkpoint`` still opens it, since it skips other keys' lines.

    ``lines`` may be a witness's whole response body. Lines already in the note are not repeated. Nothing is
    verified here (that is the reader's job); only the result's form is checked, so a malformed line or too
    many signatures raise CheckpointError rather than produce a note no reader can open.
    """
    _split_signed_note(signed_note)
    if isinstance(lines, str):
        # Split on newline only: str.splitlines would also split on U+2028 and friends inside a line.
        chunks = lines.split("\n")
        if chunks[-1] == "":
            chunks.pop()
    else:
        chunks = list(lines)
    present = set(signed_note.split("\n"))
    appended: list[str] = []
    for chunk in chunks:
        _parse_line(chunk)
        line = chunk[:-1] if chunk.endswith("\n") else chunk
        if line not in present:
            present.add(line)
            appended.append(line + "\n")
    result = signed_note + "".join(appended)
    _split_signed_note(result)  # enforces the signature-line cap and the overall form
    return result
