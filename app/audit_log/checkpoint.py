"""Signed checkpoints: a C2SP tlog-checkpoint body inside a C2SP signed note, signed with Ed25519.

A signed checkpoint looks like this (c2sp.org/tlog-checkpoint, c2sp.org/signed-note)::

    daylight.example/audit
    5
    <base64 of the 32-byte RFC 9162 root hash>
    time 1700000000

    — daylight.example/audit <base64 of key ID || Ed25519 signature>

The first three lines are the standard checkpoint body. ``time <unix seconds>`` is a Daylight extension
line (the spec allows opaque extension lines after the root): when the log signed this tree head. The key
name is the origin, and the signature covers the body exactly, final newline included.

Parsing is strict and total: every input either yields a Checkpoint whose re-encoding is byte-for-byte
the signed text, or raises CheckpointError.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from hashlib import sha256
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ROOT_HASH_SIZE = 32
ED25519_SIGNATURE_TYPE = b"\x01"
KEY_ID_SIZE = 4
# Sizes and times must fit a signed 64-bit database column.
MAX_NUMBER = 2**63 - 1
# The signed-note spec asks verifiers to cap the signatures they read and to accept at least 16.
MAX_SIGNATURE_LINES = 100

_SIGNATURE_LINE_PREFIX = "\u2014 "  # em dash, space
_TIME_LINE_PREFIX = "time "
_ED25519_SEED_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_ED25519_PUBLIC_KEY_SIZE = 32
# ASCII digits only ([0-9], not \d, which also matches other scripts' digits); no sign, no leading zero.
_CANONICAL_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


class CheckpointError(ValueError):
    """A checkpoint or signed note is malformed, not ours, or not validly signed."""


def _check_key_name(name: str, what: str) -> None:
    """C2SP signed-note key names (and so our origins): non-empty, no Unicode spaces, no '+'."""
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{what} must be a non-empty string")
    for character in name:
        if character.isspace() or character == "+" or ord(character) < 0x20 or ord(character) == 0x7F:
            raise CheckpointError(f"{what} {name!r} contains whitespace, '+' or a control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"{what} {name!r} is not valid Unicode text") from None


def _check_number(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMBER:
        raise CheckpointError(f"{what} must be an integer from 0 to {MAX_NUMBER}")


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log ``origin`` had ``tree_size`` leaves with root ``root_hash`` at ``time``.

    ``time`` is in Unix seconds. Construction validates every field and raises CheckpointError.
    """

    origin: str
    tree_size: int
    root_hash: bytes
    time: int

    def __post_init__(self) -> None:
        _check_key_name(self.origin, "the origin")
        _check_number(self.tree_size, "the tree size")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != ROOT_HASH_SIZE:
            raise CheckpointError(f"the root hash must be {ROOT_HASH_SIZE} bytes")
        _check_number(self.time, "the time")


def checkpoint_body(checkpoint: Checkpoint) -> str:
    """The note text that gets signed: origin, size, base64 root, then the Daylight ``time`` line."""
    root = base64.b64encode(checkpoint.root_hash).decode("ascii")
    return f"{checkpoint.origin}\n{checkpoint.tree_size}\n{root}\n{_TIME_LINE_PREFIX}{checkpoint.time}\n"


def note_key_id(key_name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte signed-note key ID: SHA-256(key name || 0x0A || 0x01 || raw public key)[:4]."""
    _check_key_name(key_name, "the key name")
    material = key_name.encode("utf-8") + b"\n" + ED25519_SIGNATURE_TYPE + public_key.public_bytes_raw()
    return sha256(material).digest()[:KEY_ID_SIZE]


def signing_key_from_seed(seed32: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key with this 32-byte seed (RFC 8032). Raises ValueError for any other length."""
    if len(seed32) != _ED25519_SEED_SIZE:
        raise ValueError(f"an Ed25519 seed is {_ED25519_SEED_SIZE} bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(seed32))


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> str:
    """The full signed note: body, blank line, one signature line under the key name ``checkpoint.origin``."""
    body = checkpoint_body(checkpoint)
    key_id = note_key_id(checkpoint.origin, private_key.public_key())
    signature = private_key.sign(body.encode("utf-8"))
    encoded = base64.b64encode(key_id + signature).decode("ascii")
    return f"{body}\n{_SIGNATURE_LINE_PREFIX}{checkpoint.origin} {encoded}\n"


def open_signed_checkpoint(note: str, public_key: Ed25519PublicKey, *, origin: str) -> Checkpoint:
    """The checkpoint in ``note``, once its origin and its signature by ``public_key`` are both verified.

    The signature must be under key name ``origin`` with that key's ID. Signature lines by other keys
    (witnesses, a rotated key) are ignored, as the signed-note spec requires; every line by our key
    must verify, and there must be at least one. Raises CheckpointError otherwise, or if the note or
    body is malformed in any way (missing blank line, trailing data, non-canonical numbers or base64,
    a root that is not 32 bytes, a missing ``time`` line or any other extension line).
    """
    _check_key_name(origin, "the expected origin")
    text, signatures = _split_signed_note(note)
    checkpoint = _parse_body(text)
    if checkpoint.origin != origin:
        raise CheckpointError(f"the checkpoint is for origin {checkpoint.origin!r}, not {origin!r}")
    key_id = note_key_id(origin, public_key)
    # A signature line is ours when both the name and the key ID match; the spec says to skip the rest.
    ours = [
        signature[KEY_ID_SIZE:]
        for name, signature in signatures
        if name == origin and signature[:KEY_ID_SIZE] == key_id
    ]
    if not ours:
        raise CheckpointError(f"the note has no signature by the key {origin}+{key_id.hex()}")
    signed_bytes = text.encode("utf-8")
    for signature in ours:
        if len(signature) != _ED25519_SIGNATURE_SIZE:
            raise CheckpointError("the checkpoint signature does not verify: it is not 64 bytes")
        try:
            public_key.verify(signature, signed_bytes)
        except InvalidSignature:
            raise CheckpointError("the checkpoint signature does not verify") from None
    return checkpoint


def _split_signed_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(note text, [(key name, key ID || signature)]) of a well-formed signed note."""
    if not isinstance(note, str):
        raise CheckpointError("a signed note is text")
    for character in note:
        if ord(character) < 0x20 and character != "\n":
            raise CheckpointError("a signed note must not contain control characters other than newline")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError("a signed note must be valid Unicode text") from None
    # The spec separates text from signatures at the *last* blank line.
    separator = note.rfind("\n\n")
    if separator < 0:
        raise CheckpointError("the signed note has no blank line before its signatures")
    text, signature_block = note[: separator + 1], note[separator + 2 :]
    if not signature_block:
        raise CheckpointError("the signed note has no signature lines")
    if not signature_block.endswith("\n"):
        raise CheckpointError("the signed note has trailing data after its last newline")
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURE_LINES:
        raise CheckpointError(f"the signed note has more than {MAX_SIGNATURE_LINES} signature lines")
    return text, [_parse_signature_line(line) for line in lines]


def _parse_signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(_SIGNATURE_LINE_PREFIX):
        raise CheckpointError(f"not a signature line: {line[:80]!r}")
    parts = line[len(_SIGNATURE_LINE_PREFIX) :].split(" ")
    if len(parts) != 2:  # a key name and a signature
        raise CheckpointError(f"a signature line is '— <key name> <base64>': {line[:80]!r}")
    name, encoded = parts
    _check_key_name(name, "a signature's key name")
    signature = _decode_canonical_base64(encoded, "a signature")
    if len(signature) <= KEY_ID_SIZE:
        raise CheckpointError("a signature is a 4-byte key ID followed by at least one byte")
    return name, signature


def _parse_body(text: str) -> Checkpoint:
    """The Checkpoint in a note text; ``text`` ends with a newline (the split guarantees it)."""
    lines = text[:-1].split("\n")
    if any(not line for line in lines):
        raise CheckpointError("checkpoint lines must not be empty")
    if len(lines) < 3:  # origin, tree size, root hash
        raise CheckpointError("a checkpoint has an origin, a tree size and a root hash line")
    if len(lines) == 3:
        raise CheckpointError("the checkpoint has no time line")
    origin, size_line, root_line, time_line, *extra = lines
    if extra:
        raise CheckpointError(f"unexpected checkpoint extension line: {extra[0][:80]!r}")
    tree_size = _parse_canonical_decimal(size_line, "the tree size")
    root_hash = _decode_canonical_base64(root_line, "the root hash")
    if len(root_hash) != ROOT_HASH_SIZE:
        raise CheckpointError(f"the root hash must be {ROOT_HASH_SIZE} bytes, not {len(root_hash)}")
    if not time_line.startswith(_TIME_LINE_PREFIX):
        raise CheckpointError(f"expected a 'time <unix seconds>' line, not {time_line[:80]!r}")
    time = _parse_canonical_decimal(time_line[len(_TIME_LINE_PREFIX) :], "the time")
    checkpoint = Checkpoint(origin=origin, tree_size=tree_size, root_hash=root_hash, time=time)
    # Every field was parsed canonically, so the encoding must round-trip; guard the invariant anyway.
    if checkpoint_body(checkpoint) != text:
        raise CheckpointError("the checkpoint body is not in canonical form")
    return checkpoint


def _parse_canonical_decimal(text: str, what: str) -> int:
    if _CANONICAL_DECIMAL.fullmatch(text) is None:
        raise CheckpointError(f"{what} must be a decimal number without sign or leading zeros: {text[:40]!r}")
    value = int(text)
    _check_number(value, what)
    return value


def _decode_canonical_base64(text: str, what: str) -> bytes:
    """Standard, padded base64 with no stray characters and zero padding bits (one encoding per value)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are both ValueErrors
        raise CheckpointError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise CheckpointError(f"{what} is not canonical base64")
    return raw


class VerifierKey(NamedTuple):
    """A parsed C2SP note verifier key: the key name and its Ed25519 public key.

    A named tuple, so ``name, public_key = parse_verifier_key(text)`` works.
    """

    name: str
    public_key: Ed25519PublicKey

    @property
    def key_id(self) -> bytes:
        """The 4-byte signed-note key ID of this name and key."""
        return note_key_id(self.name, self.public_key)


def verifier_key(public_key: Ed25519PublicKey, name: str) -> str:
    """The C2SP verifier key string ``<name>+<key ID hex>+<base64(0x01 || public key)>``."""
    key_id = note_key_id(name, public_key)
    encoded = base64.b64encode(ED25519_SIGNATURE_TYPE + public_key.public_bytes_raw()).decode("ascii")
    return f"{name}+{key_id.hex()}+{encoded}"


def parse_verifier_key(text: str) -> VerifierKey:
    """Inverse of ``verifier_key``. Raises CheckpointError for a malformed string, a key type other than
    Ed25519 (0x01), or a key ID that does not match the name and key."""
    # Names cannot contain '+' and IDs are hex, but standard base64 can: split at the first two only.
    parts = text.split("+", 2) if isinstance(text, str) else []
    if len(parts) != 3:  # name, key ID, key
        raise CheckpointError("a verifier key is '<name>+<8 hex digits>+<base64 key>'")
    name, key_id_hex, encoded = parts
    _check_key_name(name, "the verifier key name")
    if re.fullmatch(r"[0-9a-fA-F]{8}", key_id_hex) is None:
        raise CheckpointError("a verifier key ID is 8 hex digits")
    key = _decode_canonical_base64(encoded, "the verifier key")
    if key[:1] != ED25519_SIGNATURE_TYPE or len(key) != 1 + _ED25519_PUBLIC_KEY_SIZE:
        raise CheckpointError("only Ed25519 verifier keys (type 0x01, 32 bytes) are supported")
    public_key = Ed25519PublicKey.from_public_bytes(key[1:])
    key_id = bytes.fromhex(key_id_hex)
    if note_key_id(name, public_key) != key_id:
        raise CheckpointError("the verifier key ID does not match its name and key")
    return VerifierKey(name=name, public_key=public_key)
