from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import Boolean, Date, ForeignKey, Index, Integer, LargeBinary, String, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.crypto.contracts import EnvelopeColumn, SealedColumn, StreamColumn
from app.crypto.sealed_keys import SealedDataKeys
from app.kit.blobs import register_blob_names
from app.kit.db import Base, enum_column_type

# Each tip has its own random data key, sealed to the intake public key.
TIP_DATA_KEY = SealedColumn("tips", "sealed_data_key")
TIP_NARRATIVE = EnvelopeColumn("tips", "narrative_encrypted")
# Everything else the submitter answered (tactics, place, station, language):
# submitter-derived, so encrypted; only the urgency flag is plaintext (DESIGN 4).
TIP_ANSWERS = EnvelopeColumn("tips", "answers_encrypted")
ATTACHMENT_BLOB = StreamColumn("tip_attachments", "blob")
ATTACHMENT_DETAILS = EnvelopeColumn("tip_attachments", "details_encrypted")
# A file added at follow-up has its own data key, sealed to the intake key (the
# intake app never holds the tip's); files sent with the tip use the tip's key.
FOLLOWUP_ATTACHMENT_KEY = SealedColumn("tip_attachments", "sealed_data_key")
# Each message has its own data key: a submitter's follow-up is sealed to the
# intake key without the tip's data key, which the intake app never holds.
MESSAGE_DATA_KEY = SealedColumn("tip_messages", "sealed_data_key")
MESSAGE_BODY = EnvelopeColumn("tip_messages", "body_encrypted")
# A staff reply, also sealed to the receipt-derived key: only the receipt holder reads it.
MESSAGE_FOR_SUBMITTER = SealedColumn("tip_messages", "body_for_submitter")
# Which tip a duress code stands in for, and what was done with it: under a key only the code
# (with the pepper) derives, so a database copy cannot tell whose code it is (app.intake.duress).
DURESS_STATE = EnvelopeColumn("duress_codes", "sealed_state")


# Two key versions on every row with a data key sealed to the intake key:
# ``intake_key_version`` says which intake key opens the sealed data key and
# changes when `daylight keys rotate` re-seals it; ``content_key_version`` is the
# version the row was written under, bound into the AAD of everything encrypted
# under the data key (and its notes), and never changes: rotation re-seals the
# data key, not the content, so no ciphertext is re-encrypted and no AAD moves.
# Not a foreign key: the intake key it names is destroyed at the end of a rotation.


def message_row_id(tip_id: uuid.UUID, message_id: uuid.UUID) -> str:
    """The row id a message's ciphertexts are bound to: the message *and* its tip.

    A message has its own data key, so binding its id alone would let a
    database writer move it to another tip, where it would still open.
    """
    return f"{tip_id}/{message_id}"


def attachment_row_id(tip_id: uuid.UUID, attachment_id: uuid.UUID) -> str:
    """The row id a follow-up file's sealed key is bound to: the file *and* its tip."""
    return f"{tip_id}/{attachment_id}"


class TipStatus(StrEnum):
    NEW = "new"
    IN_REVIEW = "in_review"
    NEEDS_INFO = "needs_info"
    VERIFIED = "verified"
    REJECTED = "rejected"


class RejectionReason(StrEnum):
    SPAM = "spam"
    INSUFFICIENT = "insufficient"
    OUT_OF_SCOPE = "out_of_scope"
    DUPLICATE = "duplicate"


class MessageAuthor(StrEnum):
    SUBMITTER = "submitter"
    STAFF = "staff"


class Tip(Base):
    __tablename__ = "tips"

    # Random ids and refs: a sequence would leak how many tips arrive and in which order.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    ref: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[TipStatus] = mapped_column(
        enum_column_type(TipStatus, "status"), default=TipStatus.NEW, index=True
    )
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # Day precision only: a finer time could be matched against network logs.
    received_on: Mapped[dt.date] = mapped_column(Date)
    last_activity_on: Mapped[dt.date] = mapped_column(Date)

    # The intake key version the data key is sealed to now: `daylight keys rotate` moves it.
    intake_key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    # The version bound into the AAD of everything under the data key (see the note above message_row_id).
    content_key_version: Mapped[int] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    narrative_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    answers_encrypted: Mapped[bytes] = mapped_column(LargeBinary)

    # Workflow state (DESIGN 4: plaintext, so the queue sorts and filters in the database).
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL"), index=True
    )
    # Two-person rule: who proposed verification; a different lead confirms.
    verification_proposed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    rejection_reason: Mapped[RejectionReason | None] = mapped_column(
        enum_column_type(RejectionReason, "rejection_reason")
    )
    duplicate_of_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tips.id", ondelete="SET NULL"))
    # The submitter answered or added files since staff last read the tip.
    submitter_activity: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Filter tags (TipTag) were written by a key holder; until then the tip's tactics and
    # country are known to nobody but whoever decrypts it.
    indexed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The search index (TipSearchTerm) holds the tip's text as it is now: cleared when a message
    # or note is added, written again by the next key holder's queue or search (app.triage.indexing).
    search_indexed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # HMAC-SHA256 of the receipt under a pepper kept outside the database.
    receipt_lookup_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    receipt_public_key: Mapped[bytes] = mapped_column(LargeBinary)
    receipt_public_key_mac: Mapped[bytes] = mapped_column(LargeBinary)

    attachments: Mapped[list[TipAttachment]] = relationship(
        back_populates="tip", cascade="all, delete-orphan", passive_deletes=True
    )
    messages: Mapped[list[TipMessage]] = relationship(
        back_populates="tip",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="TipMessage.position",
    )

    __table_args__ = (
        # The queue's keyset order (urgent first, then oldest), alone and within a status.
        # Urgent *descending* in the index itself: one index scan serves ORDER BY ... LIMIT.
        Index("ix_tips_queue_order", text("urgent DESC"), "received_on", "id"),
        Index("ix_tips_status_queue_order", "status", text("urgent DESC"), "received_on", "id"),
        # The member's other orders (oldest, newest, latest activity): one backward or forward
        # index scan for a page instead of sorting every tip (bench/desk_search.py).
        Index("ix_tips_received_order", "received_on", "id"),
        Index("ix_tips_activity_order", "last_activity_on", "id"),
        # The few tips waiting for a key holder's indexing (app.triage.indexing): every queue
        # page asks, and must not read every tip to find none.
        Index(
            "ix_tips_awaiting_index",
            "id",
            postgresql_where=text("search_indexed = false"),
            sqlite_where=text("search_indexed = 0"),
        ),
    )


class TipAttachment(Base):
    """An encrypted blob in the data dir, named by this row's random id; no file name kept."""

    __tablename__ = "tip_attachments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    details_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    added_on: Mapped[dt.date] = mapped_column(Date)
    # Only for files added at follow-up (FOLLOWUP_ATTACHMENT_KEY); None: the tip's data key.
    intake_key_version: Mapped[int | None] = mapped_column(ForeignKey("intake_keys.version"))
    content_key_version: Mapped[int | None] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    # For follow-up files only: the server's MAC binding the row to its data key
    # (app.intake.integrity); a follow-up file without a valid one is never opened.
    row_mac: Mapped[bytes | None] = mapped_column(LargeBinary)

    tip: Mapped[Tip] = relationship(back_populates="attachments")


class TipMessage(Base):
    __tablename__ = "tip_messages"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), index=True)
    # Order within the tip; times are kept to the day only.
    position: Mapped[int] = mapped_column(Integer)
    author: Mapped[MessageAuthor] = mapped_column(enum_column_type(MessageAuthor, "author"))
    author_account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    sent_on: Mapped[dt.date] = mapped_column(Date)
    intake_key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    content_key_version: Mapped[int] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    body_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    body_for_submitter: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The server's MAC over what the message is and who wrote it (app.intake.integrity).
    row_mac: Mapped[bytes | None] = mapped_column(LargeBinary)

    tip: Mapped[Tip] = relationship(back_populates="messages")


# The data keys `daylight keys rotate` re-seals (app.crypto.sealed_keys). A tip is locked before
# its messages and files, as every writer of a tip does.
TIP_SEALED_KEYS = SealedDataKeys("tips", Tip, TIP_DATA_KEY, row_id=lambda tip: str(tip.id), lock_order=10)
MESSAGE_SEALED_KEYS = SealedDataKeys(
    "messages",
    TipMessage,
    MESSAGE_DATA_KEY,
    row_id=lambda message: message_row_id(message.tip_id, message.id),
    lock_order=20,
)
# Files sent with a tip use the tip's data key (intake_key_version NULL): nothing to re-seal.
FOLLOWUP_ATTACHMENT_SEALED_KEYS = SealedDataKeys(
    "files",
    TipAttachment,
    FOLLOWUP_ATTACHMENT_KEY,
    row_id=lambda attachment: attachment_row_id(attachment.tip_id, attachment.id),
    lock_order=30,
)


class DuressCode(Base):
    """A second code a submitter may give up instead of their receipt (app.intake.duress).

    Nothing here names its tip in the clear: the row holds the code's keyed hash and a sealed
    state only the code opens; its id is random, it has no date, and the tip has no column
    pointing back. On SQLite the table has no rowid, so rows lie in the order of their random
    ids, not of their creation next to the tips they were made for.
    """

    __tablename__ = "duress_codes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    lookup_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    sealed_state: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = ({"sqlite_with_rowid": False},)


class TipDuressFlag(Base):
    """Written only when the organisation chose to be told (``duress_flags_report``): a duress
    code for this tip was used, so its submitter may be under duress, and replies are stopped."""

    __tablename__ = "tip_duress_flags"

    tip_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tips.id", ondelete="CASCADE"), primary_key=True)
    # The day the code was first used; days only, like every submitter-side date.
    flagged_on: Mapped[dt.date] = mapped_column(Date)


# Each attachment's ciphertext is the blob named by its row's id.
register_blob_names(TipAttachment.id)
