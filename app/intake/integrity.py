"""Which tip rows the server itself wrote: messages and follow-up files carry a MAC under the
key-integrity key, which the database never holds.

Why these two: each has its own data key sealed to the intake *public* key, and every value
needed to make one is in the database. Someone who can write the database but not read
`secrets/` could otherwise insert a "reply from the organisation" that the receipt holder reads
("call us on Signal at …": a phishing channel in the organisation's own voice), flip a message
between submitter and staff, change its staff author, or slip a file of their own into a tip
for staff to open. The tip's own narrative, answers, notes and first files are under the tip's
data key, which such a writer cannot reach, so they need no MAC of their own.

A row whose MAC fails is treated as absent (never shown, never opened) and reported.
"""

from __future__ import annotations

import hashlib
import uuid

from app.crypto.integrity import row_is_authentic, row_mac
from app.intake.models import TipMessage

MESSAGE_RECORD = "tip_message/v1"
FOLLOWUP_FILE_RECORD = "followup_attachment/v1"


def _message_fields(message: TipMessage) -> tuple[str, str, int, str, str | None, bytes, bytes | None]:
    return (
        str(message.tip_id),
        str(message.id),
        message.position,
        message.author.value,
        None if message.author_account_id is None else str(message.author_account_id),
        message.body_encrypted,
        message.body_for_submitter,
    )


def seal_message_row(integrity_key: bytes, message: TipMessage) -> None:
    """Set the message's MAC: its tip, id, order, author and both ciphertexts. The data key's
    sealing is left out on purpose: key rotation re-seals it, and a swapped data key cannot
    open the MAC'd ciphertext anyway (AEAD)."""
    message.row_mac = row_mac(integrity_key, MESSAGE_RECORD, *_message_fields(message))


def message_is_authentic(integrity_key: bytes, message: TipMessage) -> bool:
    return row_is_authentic(integrity_key, message.row_mac, MESSAGE_RECORD, *_message_fields(message))


def followup_file_mac(
    integrity_key: bytes, tip_id: uuid.UUID, attachment_id: uuid.UUID, data_key: bytes
) -> bytes:
    """A follow-up file's MAC binds its row to the data key it was written with (by hash: the key
    itself is only ever sealed), so it is checked once the key is opened."""
    key_digest = hashlib.sha256(data_key).digest()
    return row_mac(integrity_key, FOLLOWUP_FILE_RECORD, str(tip_id), str(attachment_id), key_digest)


def followup_file_is_authentic(
    integrity_key: bytes, tip_id: uuid.UUID, attachment_id: uuid.UUID, data_key: bytes, mac: bytes | None
) -> bool:
    key_digest = hashlib.sha256(data_key).digest()
    return row_is_authentic(
        integrity_key, mac, FOLLOWUP_FILE_RECORD, str(tip_id), str(attachment_id), key_digest
    )
