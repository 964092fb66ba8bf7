"""Turning a submission into a tip's row: the station it names checked, every field sealed, a
fresh receipt. Used by `service.finish_tip` and by the group committer (app.intake.group_commit).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from app.crypto import human_codes, sealing
from app.crypto.integrity import public_key_mac
from app.intake.models import TIP_ANSWERS, TIP_DATA_KEY, TIP_NARRATIVE, TipStatus
from app.intake.receipts import new_receipt, normalize_receipt, receipt_lookup_hash, receipt_private_key
from app.intake.schemas import TipSubmission
from app.kit.clock import today
from app.kit.errors import N_, InvalidInput
from app.kit.server_secrets import ServerSecrets

TIP_REF_BITS = 40

STATION_NOT_LISTED = N_("Choose a station from the list.")


def unknown_station() -> InvalidInput:
    return InvalidInput(
        STATION_NOT_LISTED, fields=[{"field": "station_id", "message": "not a station in the registry"}]
    )


@dataclass(frozen=True, slots=True)
class SealedTip:
    """A tip's row, encrypted and ready to insert, and the receipt to show once."""

    row: dict[str, object] = field(repr=False)
    receipt: str = field(repr=False)


def seal_tip(
    tip_id: uuid.UUID,
    data_key: bytes,
    *,
    content_version: int,
    seal_version: int,
    seal_public: sealing.PublicKey,
    submission: TipSubmission,
    server_secrets: ServerSecrets,
) -> SealedTip:
    """The tips row for a submission: every field sealed, a fresh receipt; no database access,
    so it runs outside any transaction (and outside SQLite's write lock)."""
    receipt = new_receipt()
    digits = normalize_receipt(receipt)
    assert digits is not None  # noqa: S101 - a fresh receipt always normalises
    row_id = str(tip_id)
    receipt_public = receipt_private_key(server_secrets.receipt_pepper, digits).public_key()
    return SealedTip(
        receipt=receipt,
        row={
            "id": tip_id,
            "ref": "T-" + human_codes.random_code(TIP_REF_BITS).replace("-", ""),
            "status": TipStatus.NEW,
            "urgent": submission.urgent,
            "received_on": today(),
            "last_activity_on": today(),
            "intake_key_version": seal_version,
            "content_key_version": content_version,
            "sealed_data_key": TIP_DATA_KEY.seal(
                seal_public, data_key, row_id=row_id, key_version=seal_version
            ),
            "narrative_encrypted": TIP_NARRATIVE.seal(
                data_key, submission.narrative.encode(), row_id=row_id, key_version=content_version
            ),
            "answers_encrypted": TIP_ANSWERS.seal(
                data_key,
                json.dumps(submission.answers()).encode(),
                row_id=row_id,
                key_version=content_version,
            ),
            "receipt_lookup_hash": receipt_lookup_hash(server_secrets.receipt_pepper, digits),
            "receipt_public_key": receipt_public.raw,
            "receipt_public_key_mac": public_key_mac(
                server_secrets.key_integrity_key, receipt_public, *receipt_key_context(tip_id)
            ),
        },
    )


def receipt_key_context(tip_id: uuid.UUID) -> tuple[str, str]:
    """What a tip's receipt public key is MACed with: the tip, so a database writer cannot give
    a tip another tip's key (or one of their own) and read the replies sealed to it."""
    return ("tips", str(tip_id))
