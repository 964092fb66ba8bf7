"""Receiving tips and follow-up from submitters.

The intake app holds only public keys: it seals a fresh data key per tip to
the organisation's intake public key and forgets it when the request ends. It
never stores an IP address, a User-Agent, a file name or a time finer than the day.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.blobs import BlobStore
from app.crypto import envelope, human_codes, sealing
from app.crypto.streaming import StreamEncryptor
from app.db import on_rollback
from app.errors import AppError, PayloadTooLarge
from app.intake.models import (
    ATTACHMENT_BLOB,
    ATTACHMENT_DETAILS,
    MESSAGE_BODY,
    MESSAGE_DATA_KEY,
    MESSAGE_FOR_SUBMITTER,
    TIP_ANSWERS,
    TIP_DATA_KEY,
    TIP_NARRATIVE,
    MessageAuthor,
    Tip,
    TipAttachment,
    TipMessage,
    TipStatus,
    message_row_id,
)
from app.intake.receipts import new_receipt, normalize_receipt, receipt_lookup_hash, receipt_private_key
from app.intake.schemas import FollowupMessage, FollowupView, TipSubmission
from app.keys.integrity import public_key_mac, trusted_public_key
from app.keys.models import IntakeKey
from app.keys.server_secrets import ServerSecrets
from app.keys.service import current_intake_key, trusted_intake_public_key

TIP_REF_BITS = 40
# Stands in for a malformed receipt so that every lookup derives a key pair.
_UNMATCHABLE_RECEIPT = "0" * 24


class NotInitialised(AppError):
    status = 503
    code = "not_initialised"
    public_message = "The service is not ready to receive reports."


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _trusted_intake_key(session: Session,
                        server_secrets: ServerSecrets) -> tuple[IntakeKey, sealing.PublicKey]:
    intake_key = current_intake_key(session)
    if intake_key is None:
        raise NotInitialised
    return intake_key, trusted_intake_public_key(intake_key, server_secrets.key_integrity_key)


class AttachmentWriter:
    """Encrypts one uploaded file into the blob store as it streams in."""

    def __init__(self, *, attachment_id: uuid.UUID, encryptor: StreamEncryptor,
                 blob_store: BlobStore, max_bytes: int, content_type: str | None) -> None:
        self.attachment_id = attachment_id
        self.content_type = content_type
        self._encryptor = encryptor
        self._max_bytes = max_bytes
        self._sink = blob_store.create(attachment_id)
        self._sink.write(encryptor.header)
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise PayloadTooLarge("An attached file is larger than this service accepts.")
        self._sink.write(self._encryptor.update(data))

    def close(self) -> None:
        self._sink.write(self._encryptor.finalize())
        self._sink.close()

    def abort(self) -> None:
        self._sink.close()


@dataclass
class TipDraft:
    """A tip being received: its id and data key exist before its fields are known,
    so attachments can be encrypted while they stream in."""

    intake_key: IntakeKey
    intake_public: sealing.PublicKey
    server_secrets: ServerSecrets = field(repr=False)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    data_key: bytes = field(default_factory=envelope.new_data_key, repr=False)
    attachments: list[AttachmentWriter] = field(default_factory=list)

    def open_attachment(self, session: Session, blob_store: BlobStore, *, max_bytes: int,
                        content_type: str | None) -> AttachmentWriter:
        attachment_id = uuid.uuid4()
        writer = AttachmentWriter(
            attachment_id=attachment_id,
            encryptor=ATTACHMENT_BLOB.encryptor(self.data_key, row_id=str(attachment_id),
                                                key_version=self.intake_key.version),
            blob_store=blob_store, max_bytes=max_bytes, content_type=content_type,
        )
        # Registered before the first byte lands: a failed request leaves no orphan file.
        on_rollback(session, lambda: blob_store.delete(attachment_id))
        self.attachments.append(writer)
        return writer


def start_tip(session: Session, server_secrets: ServerSecrets) -> TipDraft:
    intake_key, intake_public = _trusted_intake_key(session, server_secrets)
    return TipDraft(intake_key=intake_key, intake_public=intake_public, server_secrets=server_secrets)


def finish_tip(session: Session, draft: TipDraft, submission: TipSubmission) -> str:
    """Write the tip and its attachments' rows; returns the receipt, shown once and never stored."""
    receipt = new_receipt()
    digits = normalize_receipt(receipt)
    assert digits is not None  # noqa: S101 - a fresh receipt always normalises
    version = draft.intake_key.version
    row_id = str(draft.id)
    secrets = draft.server_secrets
    receipt_public = receipt_private_key(secrets.receipt_pepper, digits).public_key()
    tip = Tip(
        id=draft.id,
        ref="T-" + human_codes.random_code(TIP_REF_BITS).replace("-", ""),
        status=TipStatus.NEW,
        urgent=submission.urgent,
        received_on=today(),
        last_activity_on=today(),
        intake_key_version=version,
        sealed_data_key=TIP_DATA_KEY.seal(draft.intake_public, draft.data_key, row_id=row_id,
                                          key_version=version),
        narrative_encrypted=TIP_NARRATIVE.seal(draft.data_key, submission.narrative.encode(),
                                               row_id=row_id, key_version=version),
        answers_encrypted=TIP_ANSWERS.seal(draft.data_key, json.dumps(submission.answers()).encode(),
                                           row_id=row_id, key_version=version),
        receipt_lookup_hash=receipt_lookup_hash(secrets.receipt_pepper, digits),
        receipt_public_key=receipt_public.raw,
        receipt_public_key_mac=public_key_mac(secrets.key_integrity_key, receipt_public,
                                              *_receipt_key_context(draft.id)),
    )
    session.add(tip)
    for writer in draft.attachments:
        details = {"size": writer.size, "content_type": writer.content_type}
        session.add(TipAttachment(
            id=writer.attachment_id, tip_id=draft.id, added_on=today(),
            details_encrypted=ATTACHMENT_DETAILS.seal(
                draft.data_key, json.dumps(details).encode(),
                row_id=str(writer.attachment_id), key_version=version),
        ))
    session.flush()
    return receipt


def _receipt_key_context(tip_id: uuid.UUID) -> tuple[str, str]:
    return ("tips", str(tip_id))


@dataclass(frozen=True, slots=True)
class ReceiptHolder:
    """A tip opened with its receipt, and the key pair only that receipt derives."""

    tip: Tip
    private_key: sealing.PrivateKey = field(repr=False)


def tip_for_receipt(session: Session, typed_receipt: object, *,
                    receipt_pepper: bytes) -> ReceiptHolder | None:
    """The tip a receipt opens, or None; valid and invalid receipts cost the same work."""
    if not isinstance(typed_receipt, str):
        typed_receipt = ""
    lookup = receipt_lookup_hash(receipt_pepper, typed_receipt)
    tip = session.scalars(select(Tip).where(Tip.receipt_lookup_hash == lookup)).first()
    digits = normalize_receipt(typed_receipt)
    private_key = receipt_private_key(receipt_pepper, digits or _UNMATCHABLE_RECEIPT)
    if tip is None or digits is None:
        return None
    return ReceiptHolder(tip=tip, private_key=private_key)


def followup_view(holder: ReceiptHolder) -> FollowupView:
    messages = []
    for message in holder.tip.messages:
        body = None
        if message.body_for_submitter is not None:
            body = MESSAGE_FOR_SUBMITTER.open(holder.private_key, message.body_for_submitter,
                                              row_id=message_row_id(holder.tip.id, message.id)).decode()
        messages.append(FollowupMessage(author=message.author, sent_on=message.sent_on.isoformat(),
                                        body=body))
    return FollowupView(status=holder.tip.status, messages=messages)


def _next_position(session: Session, tip: Tip) -> int:
    current = session.scalar(select(func.max(TipMessage.position)).where(TipMessage.tip_id == tip.id))
    return (current or 0) + 1


def add_message(session: Session, tip: Tip, body: str, *, author: MessageAuthor,
                server_secrets: ServerSecrets, author_account_id: uuid.UUID | None = None) -> TipMessage:
    """A message on a tip, under its own data key sealed to the intake key.

    Staff messages are also sealed to the receipt-derived public key, so the
    receipt holder can read them; submitter messages are not (see FollowupMessage).
    """
    intake_key, intake_public = _trusted_intake_key(session, server_secrets)
    message_id = uuid.uuid4()
    data_key = envelope.new_data_key()
    row_id = message_row_id(tip.id, message_id)
    message = TipMessage(
        id=message_id,
        tip=tip,
        position=_next_position(session, tip),
        author=author,
        author_account_id=author_account_id,
        sent_on=today(),
        intake_key_version=intake_key.version,
        sealed_data_key=MESSAGE_DATA_KEY.seal(intake_public, data_key, row_id=row_id,
                                              key_version=intake_key.version),
        body_encrypted=MESSAGE_BODY.seal(data_key, body.encode(), row_id=row_id,
                                         key_version=intake_key.version),
        body_for_submitter=(
            MESSAGE_FOR_SUBMITTER.seal(
                trusted_public_key(server_secrets.key_integrity_key, tip.receipt_public_key,
                                   tip.receipt_public_key_mac, *_receipt_key_context(tip.id)),
                body.encode(), row_id=row_id)
            if author is MessageAuthor.STAFF else None
        ),
    )
    session.add(message)
    tip.last_activity_on = today()
    if author is MessageAuthor.SUBMITTER and tip.status is TipStatus.NEEDS_INFO:
        tip.status = TipStatus.IN_REVIEW
    session.flush()
    return message
