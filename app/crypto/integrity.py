"""Public keys in the database are authenticated with a key the database never holds.

Sealing is only as good as the public key sealed to. Someone who can write
the database but not the server's files (a compromised database host in a
multi-node deployment, a restored tampered backup) could otherwise swap the
intake public key so that new tips are sealed to them, a member's public key
so that a key grant opens for them, or a receipt's public key so that replies
do. Each stored public key carries an HMAC under `secrets/key_integrity_key`,
bound to its table and row, checked before anything is sealed to it.
"""

from __future__ import annotations

import hashlib
import hmac

from app.crypto import sealing
from app.crypto.binding import BindingPart, bind
from app.kit.errors import AppError


class UntrustedPublicKey(AppError):
    status = 503
    code = "key_integrity"
    public_message = "A stored key failed its integrity check; nothing was sealed."


def public_key_mac(integrity_key: bytes, public_key: sealing.PublicKey, *context: BindingPart) -> bytes:
    return hmac.new(
        integrity_key, bind("daylight/public-key/v1", *context, public_key.raw), hashlib.sha256
    ).digest()


def trusted_public_key(
    integrity_key: bytes, raw_public_key: bytes, mac: bytes, *context: BindingPart
) -> sealing.PublicKey:
    """The stored public key, once its MAC proves the server wrote it for this row."""
    public_key = sealing.PublicKey(raw_public_key)
    if not hmac.compare_digest(public_key_mac(integrity_key, public_key, *context), mac):
        raise UntrustedPublicKey
    return public_key
