"""Receiving tips and follow-up from submitters.

The intake app holds only public keys: it seals a fresh data key per tip to
the organisation's intake public key and forgets it when the request ends. It
never stores an IP address, a User-Agent, a file name or a time finer than the day.

Each file is received by app.intake.attachments; a tip's row is sealed by app.intake.submission.
"""

from __future__ import annotations

import abc
import functools
import hmac
import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.crypto import envelope, sealing
from app.crypto.integrity import UntrustedPublicKey, trusted_public_key
from app.custody.models import IntakeKey
from app.custody.service import current_intake_key, trusted_intake_public_key
from app.intake import duress
from app.intake.attachments import AttachmentWriter, DocumentCleaning, image_memory_budget
from app.intake.integrity import followup_file_mac, message_is_authentic, seal_message_row
from app.intake.models import (
    ATTACHMENT_DETAILS,
    FOLLOWUP_ATTACHMENT_KEY,
    MESSAGE_BODY,
    MESSAGE_DATA_KEY,
    MESSAGE_FOR_SUBMITTER,
    MessageAuthor,
    Tip,
    TipAttachment,
    TipMessage,
    TipStatus,
    attachment_row_id,
    message_row_id,
)
from app.intake.receipts import normalize_receipt, receipt_lookup_hash, receipt_private_key
from app.intake.schemas import FollowupMessage, FollowupView, TipSubmission
from app.intake.submission import receipt_key_context, seal_tip, unknown_station
from app.kit.blobs import BlobStorage
from app.kit.clock import today
from app.kit.config import Settings
from app.kit.db import after_commit, on_rollback
from app.kit.errors import N_, AppError
from app.kit.server_secrets import ServerSecrets
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from app.stations.models import Station

logger = logging.getLogger("daylight.intake")

# Stands in for a malformed receipt so that every lookup derives a key pair.
_UNMATCHABLE_RECEIPT = "0" * 24


class NotInitialised(AppError):
    status = 503
    code = "not_initialised"
    public_message = N_("The service is not ready to receive reports.")


def _trusted_intake_key(
    session: Session, server_secrets: ServerSecrets
) -> tuple[IntakeKey, sealing.PublicKey]:
    intake_key = current_intake_key(session)
    if intake_key is None:
        raise NotInitialised
    return intake_key, trusted_intake_public_key(intake_key, server_secrets.key_integrity_key)


@dataclass
class UploadDraft(abc.ABC):
    """Files being received, each encrypted as it streams in, before the request says
    which tip they belong to (or before the receipt that names it is checked)."""

    intake_key: IntakeKey
    intake_public: sealing.PublicKey
    server_secrets: ServerSecrets = field(repr=False)
    attachments: list[AttachmentWriter] = field(default_factory=list)

    @abc.abstractmethod
    def _writer_key(self) -> bytes:
        """The data key a new file is encrypted under."""

    def sealing_key_now(self, session: Session) -> tuple[int, sealing.PublicKey]:
        """The intake key version (and trusted public key) to seal the draft's data keys to at commit.

        Uploads stream for minutes; a key rotation may have started or ended since the draft
        began, and the draft's version may be deleted by the time this commits. The data keys go
        to the key current now; what was encrypted under them stays bound to the draft's version
        (``content_key_version``).
        """
        current = current_intake_key(session)
        if current is None or current.version == self.intake_key.version:
            return self.intake_key.version, self.intake_public
        return current.version, trusted_intake_public_key(current, self.server_secrets.key_integrity_key)

    def open_attachment(
        self, session: Session, blob_store: BlobStorage, *, settings: Settings, content_type: str | None
    ) -> AttachmentWriter:
        attachment_id = uuid.uuid4()
        data_key = self._writer_key()
        # Registered before the first byte lands: a failed request leaves no orphan file.
        on_rollback(session, lambda: blob_store.delete(attachment_id))
        writer = AttachmentWriter(
            attachment_id=attachment_id,
            data_key=data_key,
            key_version=self.intake_key.version,
            blob_store=blob_store,
            max_bytes=settings.max_file_bytes,
            content_type=content_type,
            clean_images=settings.strip_attachment_metadata,
            max_image_bytes=settings.max_image_bytes,
            max_image_pixels=settings.max_image_pixels,
            image_memory=image_memory_budget(settings.image_memory_budget_bytes),
            documents=DocumentCleaning(
                max_bytes=settings.max_document_clean_bytes,
                seconds=settings.document_cleaning_seconds,
                memory_bytes=settings.document_cleaning_memory_bytes,
            ),
        )
        self.attachments.append(writer)
        return writer


@dataclass
class TipDraft(UploadDraft):
    """A tip being received: its id and data key exist before its fields are known,
    so attachments can be encrypted while they stream in."""

    id: uuid.UUID = field(default_factory=uuid.uuid4)
    data_key: bytes = field(default_factory=envelope.new_data_key, repr=False)

    def _writer_key(self) -> bytes:
        return self.data_key


@dataclass
class FollowupFilesDraft(UploadDraft):
    """Files a submitter adds later, each under a fresh data key: the intake app never holds
    the tip's data key after the tip is sent. The keys are sealed to the intake key once the
    receipt has named the tip, bound to it (see add_followup_files)."""

    def _writer_key(self) -> bytes:
        return envelope.new_data_key()


def start_tip(session: Session, server_secrets: ServerSecrets) -> TipDraft:
    intake_key, intake_public = _trusted_intake_key(session, server_secrets)
    return TipDraft(intake_key=intake_key, intake_public=intake_public, server_secrets=server_secrets)


def finish_tip(session: Session, draft: TipDraft, submission: TipSubmission) -> str:
    """Write the tip and its attachments' rows; returns the receipt, shown once and never stored."""
    if submission.station_id is not None and session.get(Station, submission.station_id) is None:
        raise unknown_station()
    version = draft.intake_key.version
    seal_version, seal_public = draft.sealing_key_now(session)
    sealed = seal_tip(
        draft.id,
        draft.data_key,
        content_version=version,
        seal_version=seal_version,
        seal_public=seal_public,
        submission=submission,
        server_secrets=draft.server_secrets,
    )
    session.add(Tip(**sealed.row))
    outbox.reports_received(session, urgent=int(submission.urgent), other=int(not submission.urgent))
    for writer in draft.attachments:
        session.add(
            TipAttachment(
                id=writer.attachment_id,
                tip_id=draft.id,
                added_on=today(),
                details_encrypted=ATTACHMENT_DETAILS.seal(
                    draft.data_key, writer.details(), row_id=str(writer.attachment_id), key_version=version
                ),
            )
        )
    session.flush()
    return sealed.receipt


def start_followup_files(session: Session, server_secrets: ServerSecrets) -> FollowupFilesDraft:
    intake_key, intake_public = _trusted_intake_key(session, server_secrets)
    return FollowupFilesDraft(
        intake_key=intake_key, intake_public=intake_public, server_secrets=server_secrets
    )


def add_followup_files(session: Session, tip: Tip, draft: FollowupFilesDraft) -> int:
    """Attach files received at follow-up to the tip the receipt opened; returns how many.

    Each file's key is sealed to the intake key bound to this tip and file, so a
    database writer cannot move the file to another tip and have it open there.
    """
    version = draft.intake_key.version
    seal_version, seal_public = draft.sealing_key_now(session)
    # The same lock as delete_tip: a file is added to a tip that still exists, or not at all.
    session.execute(select(Tip.id).where(Tip.id == tip.id).with_for_update())
    for writer in draft.attachments:
        session.add(
            TipAttachment(
                id=writer.attachment_id,
                tip_id=tip.id,
                added_on=today(),
                intake_key_version=seal_version,
                content_key_version=version,
                sealed_data_key=FOLLOWUP_ATTACHMENT_KEY.seal(
                    seal_public,
                    writer.data_key,
                    row_id=attachment_row_id(tip.id, writer.attachment_id),
                    key_version=seal_version,
                ),
                details_encrypted=ATTACHMENT_DETAILS.seal(
                    writer.data_key, writer.details(), row_id=str(writer.attachment_id), key_version=version
                ),
                row_mac=followup_file_mac(
                    draft.server_secrets.key_integrity_key, tip.id, writer.attachment_id, writer.data_key
                ),
            )
        )
    if draft.attachments:
        _note_submitter_activity(session, tip)
    session.flush()
    return len(draft.attachments)


def _note_submitter_activity(session: Session, tip: Tip) -> None:
    """The submitter answered (a message or files): the tip shows as active (which also restarts
    its retention clock), a tip that was waiting for them goes back to review, and whoever holds
    it hears of it (everyone holding the key, while nobody does)."""
    if tip.assignee_id is not None:
        outbox.notify(session, NoticeKind.SUBMITTER_ANSWERED, Audience.MEMBER, audience_id=tip.assignee_id)
    else:
        # The report's id, for the sender only (the row lives until its next run): a report in a
        # restricted case is announced to the case's members alone.
        outbox.notify(session, NoticeKind.SUBMITTER_ANSWERED, Audience.KEY_HOLDERS, audience_id=tip.id)
    tip.last_activity_on = today()
    tip.submitter_activity = True
    if tip.status is TipStatus.NEEDS_INFO:
        tip.status = TipStatus.IN_REVIEW


def delete_tip(session: Session, holder: ReceiptHolder, blob_store: BlobStorage) -> None:
    """The submitter deletes their report: crypto-shredding.

    The rows holding the sealed data keys are deleted (SQLite overwrites freed
    pages, secure_delete), which leaves every ciphertext of the tip unreadable,
    then the attachment files are unlinked once the deletion has committed: if
    the process dies in between, what remains is ciphertext with no key.

    Not written to the audit log: its events carry exact times, and DESIGN 5
    records no submitter action finer than the day. The staff events about
    the tip remain, so its existence stays on the record.
    """
    tip = holder.tip
    # Locked first (PostgreSQL): a follow-up upload committing meanwhile would otherwise add
    # a file row the cascade removes but whose blob nobody unlinks.
    session.execute(select(Tip.id).where(Tip.id == tip.id).with_for_update())
    attachment_ids = list(session.scalars(select(TipAttachment.id).where(TipAttachment.tip_id == tip.id)))
    session.delete(tip)
    session.flush()
    for attachment_id in attachment_ids:
        after_commit(session, functools.partial(blob_store.delete, attachment_id))


@dataclass(frozen=True, slots=True)
class ReceiptHolder:
    """A tip opened with its receipt, and the key pair only that receipt derives."""

    tip: Tip
    private_key: sealing.PrivateKey = field(repr=False)
    # What proves the tip's messages are the server's own (app.intake.integrity).
    key_integrity_key: bytes = field(repr=False)


def tip_for_receipt(
    session: Session, typed_receipt: object, *, receipt_pepper: bytes, key_integrity_key: bytes
) -> ReceiptHolder | None:
    """The tip a receipt opens, or None; valid and invalid receipts cost the same work."""
    if not isinstance(typed_receipt, str):
        typed_receipt = ""
    lookup = receipt_lookup_hash(receipt_pepper, typed_receipt)
    tip = session.scalars(select(Tip).where(Tip.receipt_lookup_hash == lookup)).first()
    digits = normalize_receipt(typed_receipt)
    private_key = receipt_private_key(receipt_pepper, digits or _UNMATCHABLE_RECEIPT)
    if tip is None or digits is None:
        return None
    if not _receipt_opens(tip, private_key, key_integrity_key):
        # The lookup row points at a tip whose receipt key this receipt does not derive (or
        # whose key the server never wrote): a database writer moved a receipt to another
        # tip, to read, answer and delete it. The same answer as an unknown receipt.
        logger.error("a receipt matched a tip whose receipt key it does not open: integrity alert")
        return None
    return ReceiptHolder(tip=tip, private_key=private_key, key_integrity_key=key_integrity_key)


def _receipt_opens(tip: Tip, private_key: sealing.PrivateKey, key_integrity_key: bytes) -> bool:
    try:
        stored = trusted_public_key(
            key_integrity_key,
            tip.receipt_public_key,
            tip.receipt_public_key_mac,
            *receipt_key_context(tip.id),
        )
    except UntrustedPublicKey:
        return False
    return hmac.compare_digest(stored.raw, private_key.public_key().raw)


FollowupHolder = ReceiptHolder | duress.DuressHolder


def open_followup(
    session: Session,
    typed_receipt: object,
    *,
    receipt_pepper: bytes,
    key_integrity_key: bytes,
    flag_duress: bool,
) -> FollowupHolder | None:
    """What a code typed at follow-up opens: the report (a receipt), its harmless stand-in (a
    duress code, app.intake.duress), or nothing. Both lookups run for every code typed, so the
    two kinds of code, and codes that open nothing, cost the same reads and derivations."""
    typed = typed_receipt if isinstance(typed_receipt, str) else ""
    holder = tip_for_receipt(
        session, typed, receipt_pepper=receipt_pepper, key_integrity_key=key_integrity_key
    )
    under_duress = duress.open_duress_code(session, typed, receipt_pepper)
    if holder is not None:
        return holder
    if under_duress is not None:
        duress.record_use(session, under_duress, flag_report=flag_duress)
    return under_duress


def followup_view(holder: FollowupHolder) -> FollowupView:
    if isinstance(holder, duress.DuressHolder):
        # A report just received, with no replies: what its submitter "sent" is listed by day
        # only, as a real submitter's own messages are (never shown back).
        return FollowupView(
            status=TipStatus.NEW,
            messages=[
                FollowupMessage(author=MessageAuthor.SUBMITTER, sent_on=day.isoformat(), body=None)
                for day in holder.state.sent_on()
            ],
        )
    messages = []
    for message in holder.tip.messages:
        if not message_is_authentic(holder.key_integrity_key, message):
            # Never shown: a "reply" the server did not write is a phishing channel in the
            # organisation's voice. Logged without any id (a submitter's visit is not
            # recorded); staff see the alert when they open the tip.
            logger.error("a message on a tip failed its integrity check and was not shown")
            continue
        body = None
        if message.body_for_submitter is not None:
            body = MESSAGE_FOR_SUBMITTER.open(
                holder.private_key,
                message.body_for_submitter,
                row_id=message_row_id(holder.tip.id, message.id),
            ).decode()
        messages.append(
            FollowupMessage(author=message.author, sent_on=message.sent_on.isoformat(), body=body)
        )
    return FollowupView(status=holder.tip.status, messages=messages)


def _next_position(session: Session, tip: Tip) -> int:
    current = session.scalar(select(func.max(TipMessage.position)).where(TipMessage.tip_id == tip.id))
    return (current or 0) + 1


def add_message(
    session: Session,
    tip: Tip,
    body: str,
    *,
    author: MessageAuthor,
    server_secrets: ServerSecrets,
    author_account_id: uuid.UUID | None = None,
) -> TipMessage:
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
        tip_id=tip.id,  # set now, not at flush: the MAC below covers it
        tip=tip,
        position=_next_position(session, tip),
        author=author,
        author_account_id=author_account_id,
        sent_on=today(),
        intake_key_version=intake_key.version,
        content_key_version=intake_key.version,
        sealed_data_key=MESSAGE_DATA_KEY.seal(
            intake_public, data_key, row_id=row_id, key_version=intake_key.version
        ),
        body_encrypted=MESSAGE_BODY.seal(
            data_key, body.encode(), row_id=row_id, key_version=intake_key.version
        ),
        body_for_submitter=(
            MESSAGE_FOR_SUBMITTER.seal(
                trusted_public_key(
                    server_secrets.key_integrity_key,
                    tip.receipt_public_key,
                    tip.receipt_public_key_mac,
                    *receipt_key_context(tip.id),
                ),
                body.encode(),
                row_id=row_id,
            )
            if author is MessageAuthor.STAFF
            else None
        ),
    )
    seal_message_row(server_secrets.key_integrity_key, message)
    session.add(message)
    # The tip's search terms no longer cover its text: the next key holder's queue writes them again.
    tip.search_indexed = False
    if author is MessageAuthor.SUBMITTER:
        _note_submitter_activity(session, tip)
    else:
        tip.last_activity_on = today()
    session.flush()
    return message
