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


# A row's authenticity: an HMAC under the key-integrity key over the fields that say what the
# row is and who wrote it. Someone who can write the database but not read `secrets/` (a
# separate database host, a leaked database credential, an injection) can still insert and
# change rows; a row whose MAC fails is treated as absent and reported, never shown or used.
OptionalPart = BindingPart | None


def row_mac(integrity_key: bytes, record: str, *fields: OptionalPart) -> bytes:
    """The MAC of one row of kind ``record`` (e.g. "tip_message/v1") over ``fields``, in order.

    None is encoded distinctly from every str, bytes and int (as its own tag), so a NULL column
    can never be confused with an empty one."""
    parts: list[BindingPart] = ["daylight/row/v1", record]
    for field in fields:
        parts.extend(("null",) if field is None else ("value", field))
    return hmac.new(integrity_key, bind(*parts), hashlib.sha256).digest()


def row_is_authentic(integrity_key: bytes, mac: bytes | None, record: str, *fields: OptionalPart) -> bool:
    """Whether ``mac`` is the row's MAC; a missing MAC never is."""
    if mac is None:
        return False
    return hmac.compare_digest(row_mac(integrity_key, record, *fields), mac)
