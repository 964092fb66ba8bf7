"""Receipts: the submitter's only credential.

120 bits from the OS CSPRNG, written as 24 Crockford base32 characters in
groups of four. The database keeps only an HMAC-SHA256 of the receipt under a
pepper kept outside the database, so a database copy cannot confirm a guessed
or seized receipt. Replies are sealed to a key pair derived from the receipt.
"""

from __future__ import annotations

import hashlib
import hmac

from app.crypto import human_codes, sealing
from app.crypto.binding import bind

RECEIPT_BITS = 120
RECEIPT_CHARS = 24


def new_receipt() -> str:
    return human_codes.random_code(RECEIPT_BITS)


def normalize_receipt(typed: str) -> str | None:
    return human_codes.normalize(typed, length=RECEIPT_CHARS)


def receipt_lookup_hash(pepper: bytes, typed: str) -> bytes:
    """The stored hash for a typed receipt; malformed input hashes too (same work, no match)."""
    digits = normalize_receipt(typed)
    message = (
        bind("daylight/receipt/v1", digits)
        if digits is not None
        else bind("daylight/receipt/malformed", typed[:200])
    )
    return hmac.new(pepper, message, hashlib.sha256).digest()


def receipt_private_key(pepper: bytes, digits: str) -> sealing.PrivateKey:
    """The key pair replies are sealed to.

    Derived from the receipt *and* the pepper: the public half is stored, and
    an unkeyed derivation would let someone holding a database copy and a
    seized receipt find the report without the server's secrets.
    """
    keyed_secret = hmac.new(pepper, bind("daylight/receipt-keypair/v1", digits), hashlib.sha256).digest()
    return sealing.derive_private_key(keyed_secret, "receipt")
