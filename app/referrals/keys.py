"""Recipient keys for referral bundles: fingerprints and the two key files a recipient keeps.

A recipient (a partner organisation, a police unit) holds a hybrid ML-KEM-768 + X25519 key pair
(`app.crypto.sealing`). Daylight stores only the public half, as a one-line text file the recipient
hands over; the private half never leaves the recipient's machine. Both files are versioned and parsed
strictly: one accepted spelling per key, so a key cannot be altered in transit and still be read.

Public key file (one line, UTF-8, ending in a newline)::

    daylight-referral-public-key/v1 <base64 of the 1216-byte public key> <name>

The name comes last so that it may contain spaces ("Example Refugee Council"): 1 to 100 printable
characters, no leading or trailing space, no control or line-separator character. It is a label for
people, chosen by whoever made the key; it is not authenticated. What identifies a key is its
fingerprint, which is compared out of band (read aloud over a call, compared on paper) before a key is
trusted.

Private key file (two lines, mode 0600)::

    daylight-referral-private-key/v1
    <base64 of the 96-byte private key: 64-byte ML-KEM-768 seed || 32-byte X25519 key>

Fingerprint: SHA-256 over ``bind("daylight/referral-recipient-key/v1", raw public key)``
(`app.crypto.binding`), written as 64 upper-case hex digits in 16 groups of 4 separated by single spaces.
The same 32 bytes identify the recipient inside a bundle (`app.referrals.bundle`).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from app.crypto import sealing
from app.crypto.binding import bind

PUBLIC_KEY_FORMAT = "daylight-referral-public-key/v1"
PRIVATE_KEY_FORMAT = "daylight-referral-private-key/v1"
FINGERPRINT_CONTEXT = "daylight/referral-recipient-key/v1"
FINGERPRINT_BYTES = 32
MAX_NAME_CHARACTERS = 100
# Key files are small; a larger file is not a key (and is not read whole into memory).
MAX_KEY_FILE_BYTES = 4096

_FINGERPRINT_TEXT = re.compile(r"[0-9A-F]{4}(?: [0-9A-F]{4}){15}")
# Characters that would let a name break out of its line or hide its real text: line and paragraph
# separators, and bidirectional overrides and isolates (a name shown reversed).
_REFUSED_NAME_CHARACTERS = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class RecipientKeyError(ValueError):
    """A key file or fingerprint is malformed; the message says what is wrong and never quotes a secret."""


@dataclass(frozen=True, slots=True)
class RecipientPublicKey:
    """A parsed public key file: the label its maker gave it, the key, and the key's fingerprint."""

    name: str
    public_key: sealing.PublicKey
    fingerprint: str


def fingerprint_digest(public_key: sealing.PublicKey) -> bytes:
    """The 32-byte fingerprint of ``public_key``, as bundles carry it."""
    return sha256(bind(FINGERPRINT_CONTEXT, public_key.raw)).digest()


def format_fingerprint(digest: bytes) -> str:
    """``"ABCD 0123 …"``: 16 groups of 4 upper-case hex digits."""
    if len(digest) != FINGERPRINT_BYTES:
        raise RecipientKeyError(f"a fingerprint is {FINGERPRINT_BYTES} bytes")
    text = digest.hex().upper()
    return " ".join(text[start : start + 4] for start in range(0, len(text), 4))


def fingerprint(public_key: sealing.PublicKey) -> str:
    """The fingerprint people compare, and the form audit events record: 16 groups of 4 hex digits."""
    return format_fingerprint(fingerprint_digest(public_key))


def short_fingerprint(public_key: sealing.PublicKey) -> str:
    """The first 4 groups, to tell keys apart in a list; never enough to trust a key by."""
    return fingerprint(public_key)[:19]


def parse_fingerprint(text: str) -> bytes:
    """The 32 bytes of a fingerprint in the exact form `fingerprint` writes; RecipientKeyError otherwise."""
    if not isinstance(text, str) or _FINGERPRINT_TEXT.fullmatch(text) is None:
        raise RecipientKeyError("a fingerprint is 16 groups of 4 upper-case hex digits separated by spaces")
    return bytes.fromhex(text.replace(" ", ""))


def check_name(name: str) -> str:
    """``name`` if it can label a public key file; RecipientKeyError otherwise."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARACTERS:
        raise RecipientKeyError(f"a key name is 1 to {MAX_NAME_CHARACTERS} characters")
    if name != name.strip(" "):
        raise RecipientKeyError("a key name does not start or end with a space")
    for character in name:
        if character != " " and (not character.isprintable() or character in _REFUSED_NAME_CHARACTERS):
            raise RecipientKeyError(
                "a key name holds printable characters only (no tabs, line breaks or controls)"
            )
    return name


def _decode_canonical_base64(text: str, what: str, size: int) -> bytes:
    # One spelling per value: standard alphabet, padded, no whitespace, zero padding bits.
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise RecipientKeyError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise RecipientKeyError(f"{what} is not canonical base64")
    if len(raw) != size:
        raise RecipientKeyError(f"{what} is {len(raw)} bytes, not {size}")
    return raw


def format_public_key(name: str, public_key: sealing.PublicKey) -> str:
    """The public key file's text, with its final newline."""
    encoded = base64.b64encode(public_key.raw).decode("ascii")
    return f"{PUBLIC_KEY_FORMAT} {encoded} {check_name(name)}\n"


def parse_public_key(text: str) -> RecipientPublicKey:
    """Inverse of `format_public_key`: exactly one line, with or without its final newline."""
    if not isinstance(text, str):
        raise RecipientKeyError("a public key file is text")
    if text.startswith(PRIVATE_KEY_FORMAT):
        raise RecipientKeyError("this is a private key file; give the public key file instead")
    line = text[:-1] if text.endswith("\n") else text
    if "\n" in line or "\r" in line:
        raise RecipientKeyError("a public key file is one line")
    parts = line.split(" ", 2)
    if len(parts) != 3 or parts[0] != PUBLIC_KEY_FORMAT:
        raise RecipientKeyError(f"a public key file is one line '{PUBLIC_KEY_FORMAT} <base64 key> <name>'")
    _, encoded, name = parts
    raw = _decode_canonical_base64(encoded, "the public key", sealing.PUBLIC_KEY_BYTES)
    try:
        public_key = sealing.PublicKey(raw)
        public_key._hpke()  # refuse a key the KEM cannot use now, not when a bundle is sealed to it
    except ValueError:
        raise RecipientKeyError("the public key is not a valid ML-KEM-768 + X25519 key") from None
    return RecipientPublicKey(check_name(name), public_key, fingerprint(public_key))


def format_private_key(private_key: sealing.PrivateKey) -> str:
    """The private key file's text (two lines). Secret: write it with `write_private_key`."""
    return f"{PRIVATE_KEY_FORMAT}\n{base64.b64encode(private_key.raw).decode('ascii')}\n"


def parse_private_key(text: str) -> sealing.PrivateKey:
    """Inverse of `format_private_key`: the two lines, the final newline optional."""
    if not isinstance(text, str):
        raise RecipientKeyError("a private key file is text")
    lines = (text[:-1] if text.endswith("\n") else text).split("\n")
    if lines[0] == PUBLIC_KEY_FORMAT or lines[0].startswith(PUBLIC_KEY_FORMAT + " "):
        raise RecipientKeyError("this is a public key file; the private key is needed to open a bundle")
    if len(lines) != 2 or lines[0] != PRIVATE_KEY_FORMAT:
        raise RecipientKeyError(f"a private key file is the line '{PRIVATE_KEY_FORMAT}' and a base64 line")
    return sealing.PrivateKey(
        _decode_canonical_base64(lines[1], "the private key", sealing.PRIVATE_KEY_BYTES)
    )


def read_private_key(path: Path) -> sealing.PrivateKey:
    """The private key in the file at ``path``. OSError if it cannot be read, RecipientKeyError if it is
    not a private key file."""
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise RecipientKeyError("the file is too large to be a private key file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise RecipientKeyError("a private key file is ASCII text") from None
    return parse_private_key(text)


def read_public_key(path: Path) -> RecipientPublicKey:
    """The public key file at ``path``. OSError if it cannot be read, RecipientKeyError if malformed."""
    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise RecipientKeyError("the file is too large to be a public key file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipientKeyError("a public key file is UTF-8 text") from None
    return parse_public_key(text)


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    """Write a new file; FileExistsError if anything (a file, a symlink) is already at ``path``."""
    # O_EXCL with O_CREAT also refuses a dangling symlink, so a planted link cannot redirect the key.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(descriptor, mode)  # whatever the umask was
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        path.unlink(missing_ok=True)
        raise
    os.close(descriptor)


def write_private_key(path: Path, private_key: sealing.PrivateKey) -> None:
    """Write the private key file, readable by its owner only (0600). Never overwrites: FileExistsError
    if ``path`` exists."""
    _create_exclusive(path, format_private_key(private_key).encode("ascii"), 0o600)


def write_public_key(path: Path, name: str, public_key: sealing.PublicKey) -> None:
    """Write the public key file (0644: it is meant to be handed over). FileExistsError if ``path`` exists."""
    _create_exclusive(path, format_public_key(name, public_key).encode("utf-8"), 0o644)


def generate_recipient_key(name: str) -> tuple[sealing.PrivateKey, str]:
    """A fresh key pair: (the private key, the public key file's text)."""
    check_name(name)
    private_key = sealing.generate_private_key()
    return private_key, format_public_key(name, private_key.public_key())
