"""Receiving tips and follow-up from submitters.

The intake app holds only public keys: it seals a fresh data key per tip to
the organisation's intake public key and forgets it when the request ends. It
never stores an IP address, a User-Agent, a file name or a time finer than the day.
"""

from __future__ import annotations

import abc
import datetime as dt
import functools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.crypto import envelope, human_codes, sealing
from app.crypto.integrity import public_key_mac, trusted_public_key
from app.intake import cleaning
from app.intake.models import (
    ATTACHMENT_BLOB,
    ATTACHMENT_DETAILS,
    FOLLOWUP_ATTACHMENT_KEY,
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
    attachment_row_id,
    message_row_id,
)
from app.intake.receipts import new_receipt, normalize_receipt, receipt_lookup_hash, receipt_private_key
from app.intake.schemas import FollowupMessage, FollowupView, TipSubmission
from app.keys.models import IntakeKey
from app.keys.service import current_intake_key, trusted_intake_public_key
from app.kit.blobs import BlobStorage
from app.kit.config import Settings
from app.kit.db import after_commit, on_rollback
from app.kit.errors import AppError, InvalidInput, PayloadTooLarge
from app.kit.server_secrets import ServerSecrets
from app.stations.models import Station
from app.web.i18n import N_

TIP_REF_BITS = 40
# Stands in for a malformed receipt so that every lookup derives a key pair.
_UNMATCHABLE_RECEIPT = "0" * 24


class NotInitialised(AppError):
    status = 503
    code = "not_initialised"
    public_message = N_("The service is not ready to receive reports.")


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _trusted_intake_key(
    session: Session, server_secrets: ServerSecrets
) -> tuple[IntakeKey, sealing.PublicKey]:
    intake_key = current_intake_key(session)
    if intake_key is None:
        raise NotInitialised
    return intake_key, trusted_intake_public_key(intake_key, server_secrets.key_integrity_key)


_DECLARED_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}")
UNKNOWN_CONTENT_TYPE = "application/octet-stream"
# Cleaning a picture is seconds of CPU for the largest ones: at most this many are cleaned at
# once per process, so photos cannot take every core. The others wait their turn (their uploads
# are complete) for at most cleaning.CLEANING_WAIT_SECONDS, then get a 503: a stream of costly
# pictures must not build a queue that every other submission waits minutes in.
_CLEANING_SLOTS = threading.BoundedSemaphore(2)
# The encryptor's chunk: a re-encoded picture is encrypted in pieces of this size as the encoder
# writes it, so it is never held whole, in plaintext or ciphertext.
_CLEANED_PIECE_BYTES = 64 * 1024


@functools.cache
def _image_memory_budget(limit_bytes: int) -> cleaning.ImageMemoryBudget:
    """The process's budget for image cleaning (one per configured size: tests build apps with
    several; a deployment has one)."""
    return cleaning.ImageMemoryBudget(limit_bytes)


def _declared_content_type(declared: str | None) -> str:
    """The client's Content-Type for a file, when it is a plain type/subtype; never trusted to
    decide anything, only shown to staff (downloads are always octet-stream attachments)."""
    if declared and _DECLARED_TYPE.fullmatch(declared.strip()):
        return declared.strip().lower()
    return UNKNOWN_CONTENT_TYPE


class AttachmentWriter:
    """Encrypts one uploaded file into the blob store as it streams in.

    Images (recognised by their first bytes, never by name or declared type) are
    the exception: they are collected, re-encoded from pixels without their
    metadata (app.intake.cleaning) and only then encrypted, because decoding needs
    the whole file. Every other file streams straight through the cipher and is
    marked as still carrying whatever metadata it had.

    An image's bytes count against the process's image memory budget from the moment
    they are held: the reservation grows as they arrive, covers the decoding when the
    part ends, and is released by `close` or `abort`, whichever comes first, however
    the upload ends.
    """

    def __init__(
        self,
        *,
        attachment_id: uuid.UUID,
        data_key: bytes,
        key_version: int,
        blob_store: BlobStorage,
        max_bytes: int,
        content_type: str | None,
        clean_images: bool,
        max_image_bytes: int,
        max_image_pixels: int,
        image_memory: cleaning.ImageMemoryBudget,
    ) -> None:
        self.attachment_id = attachment_id
        self.data_key = data_key
        self.content_type = _declared_content_type(content_type)
        self.metadata = cleaning.MetadataOutcome.NOT_REMOVED
        self._encryptor = ATTACHMENT_BLOB.encryptor(
            data_key, row_id=str(attachment_id), key_version=key_version
        )
        self._max_bytes = max_bytes
        self._clean_images = clean_images
        self._max_image_bytes = max_image_bytes
        self._max_image_pixels = max_image_pixels
        self._memory = image_memory.reservation()
        self._sink = blob_store.create(attachment_id)
        self._sink.write(self._encryptor.header)
        self._held: list[bytes] | None = []  # the first bytes until the type is known; all of an image
        self._image = False
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise PayloadTooLarge(N_("An attached file is larger than this service accepts."))
        if self._held is None:
            self._sink.write(self._encryptor.update(data))
            return
        self._held.append(data)
        if not self._image and self.size >= cleaning.SNIFF_BYTES:
            self._decide()
        if self._image:
            if self.size > self._max_image_bytes:
                raise cleaning.ImageTooLarge
            # Held bytes are memory as much as decoded pixels are: sixteen uploads of 32 MiB each
            # are half a gigabyte before anything is decoded. (The sniffing window, at most one
            # chunk, is held for any file and not counted.)
            self._memory.grow_to(self.size)

    def _decide(self) -> None:
        assert self._held is not None  # noqa: S101 - only called while holding
        head = b"".join(self._held)
        self._image = self._clean_images and cleaning.sniff_image(head[: cleaning.SNIFF_BYTES]) is not None
        if not self._image:
            self._held = None
            self._sink.write(self._encryptor.update(head))

    def close(self) -> None:
        if self._held is not None and not self._image:
            # Shorter than the sniffing window: too short to be a picture, stored as it came.
            self._clean_images = False
            self._decide()
        if self._held is not None:
            try:
                self._write_cleaned_image()
            finally:
                self._held = None
                self._memory.release()
        self._sink.write(self._encryptor.finalize())
        self._sink.close()

    def _write_cleaned_image(self) -> None:
        assert self._held is not None  # noqa: S101 - only called while holding
        if not _CLEANING_SLOTS.acquire(timeout=cleaning.CLEANING_WAIT_SECONDS):
            raise cleaning.ImageCleaningBusy
        try:
            # Joining copies the file once more, for a moment.
            self._memory.grow_to(2 * self.size)
            encoded = b"".join(self._held)
            self._held = None
            self._memory.shrink_to(len(encoded))
            self.size = 0
            self.content_type = cleaning.clean_image_into(
                encoded, self._encrypt_cleaned, max_pixels=self._max_image_pixels, memory=self._memory
            )
            self.metadata = cleaning.MetadataOutcome.REMOVED
        finally:
            _CLEANING_SLOTS.release()

    def _encrypt_cleaned(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            # A few hundred kilobytes can decode to pixels that re-encode to hundreds of
            # megabytes (noise survives no compressor): the file limit holds for what is stored.
            raise cleaning.ImageTooLarge
        for start in range(0, len(data), _CLEANED_PIECE_BYTES):
            self._sink.write(self._encryptor.update(data[start : start + _CLEANED_PIECE_BYTES]))

    def abort(self) -> None:
        self._held = None
        self._memory.release()
        self._sink.close()

    def details(self) -> bytes:
        """What staff are told about the file, sealed with its key: no name, ever."""
        return json.dumps(
            {"size": self.size, "content_type": self.content_type, "metadata": self.metadata.value}
        ).encode()


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
            image_memory=_image_memory_budget(settings.image_memory_budget_bytes),
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
                server_secrets.key_integrity_key, receipt_public, *_receipt_key_context(tip_id)
            ),
        },
    )


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
            )
        )
    if draft.attachments:
        _note_submitter_activity(tip)
    session.flush()
    return len(draft.attachments)


def _note_submitter_activity(tip: Tip) -> None:
    """The submitter answered (a message or files): the tip shows as active, and a tip that was
    waiting for them goes back to review."""
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


def _receipt_key_context(tip_id: uuid.UUID) -> tuple[str, str]:
    return ("tips", str(tip_id))


@dataclass(frozen=True, slots=True)
class ReceiptHolder:
    """A tip opened with its receipt, and the key pair only that receipt derives."""

    tip: Tip
    private_key: sealing.PrivateKey = field(repr=False)


def tip_for_receipt(
    session: Session, typed_receipt: object, *, receipt_pepper: bytes
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
    return ReceiptHolder(tip=tip, private_key=private_key)


def followup_view(holder: ReceiptHolder) -> FollowupView:
    messages = []
    for message in holder.tip.messages:
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
                    *_receipt_key_context(tip.id),
                ),
                body.encode(),
                row_id=row_id,
            )
            if author is MessageAuthor.STAFF
            else None
        ),
    )
    session.add(message)
    if author is MessageAuthor.SUBMITTER:
        _note_submitter_activity(tip)
    else:
        tip.last_activity_on = today()
    session.flush()
    return message
