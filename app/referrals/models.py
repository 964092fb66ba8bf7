"""Recipients of referrals and the referrals themselves.

A recipient is an organisation outside Daylight (a partner, a journalist, the police or
prosecutors) that made a key pair with `daylight referral keygen` and gave a lead its public
key. Its name and contact are the organisation's own knowledge of whom it works with, which a
state would like to learn from a stolen database: sealed like content (own data key, sealed to
the intake key). Its public key is stored with a MAC under the key-integrity key, so that a
database writer cannot put their own key in its place and receive the next referral; a second
lead confirms the fingerprint with the recipient before the key is first used.

A referral is what a member proposes to hand over from a case, and a lead other than the
proposer approves: its selection, redactions, cover note and manifest are sealed content; the
manifest's SHA-256 is written in the approval's audit event, and the bundle (already sealed to
the recipients) is kept in the blob store, named by a random id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import EnvelopeColumn, SealedColumn, SealedRecord
from app.crypto.sealed_keys import SealedDataKeys
from app.kit.blobs import register_blob_names
from app.kit.db import Base, enum_column_type

RECIPIENT_DATA_KEY = SealedColumn("referral_recipients", "sealed_data_key")
RECIPIENT_DETAILS = EnvelopeColumn("referral_recipients", "details_encrypted")
RECIPIENT_RECORD = SealedRecord(RECIPIENT_DATA_KEY, RECIPIENT_DETAILS)
REFERRAL_DATA_KEY = SealedColumn("referrals", "sealed_data_key")
REFERRAL_SPEC = EnvelopeColumn("referrals", "spec_encrypted")
REFERRAL_RECORD = SealedRecord(REFERRAL_DATA_KEY, REFERRAL_SPEC)


class RecipientKind(StrEnum):
    # Police, prosecutors, a ministry: only reports whose submitters allowed the authorities.
    AUTHORITY = "authority"
    PARTNER = "partner"  # another organisation working with victims
    JOURNALIST = "journalist"


class ReferralStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REVOKED = "revoked"


class ReferralRecipient(Base):
    __tablename__ = "referral_recipients"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    kind: Mapped[RecipientKind] = mapped_column(enum_column_type(RecipientKind, "recipient_kind"))
    # The hybrid ML-KEM-768 + X25519 public key bundles are sealed to, and its MAC (bound to this
    # row) under the key-integrity key: checked before every seal.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_mac: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(80))  # 16 groups of 4 hex digits
    added_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    added_on: Mapped[dt.date] = mapped_column(Date)
    # The second lead who compared the fingerprint with the recipient; None: not usable yet.
    confirmed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    confirmed_on: Mapped[dt.date | None] = mapped_column(Date)
    retired_on: Mapped[dt.date | None] = mapped_column(Date)
    # The server's MAC over what decides whether a referral may be sealed to this row: its kind
    # (authority or partner: the submitters' consent depends on it), its key's fingerprint, who
    # confirmed it, whether it is retired (app.referrals.recipients). A database writer without
    # the key-integrity key can change none of them unseen.
    row_mac: Mapped[bytes] = mapped_column(LargeBinary)
    intake_key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    content_key_version: Mapped[int] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    # {"name": ..., "contact": ...}
    details_encrypted: Mapped[bytes] = mapped_column(LargeBinary)


class Referral(Base):
    __tablename__ = "referrals"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    case_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    status: Mapped[ReferralStatus] = mapped_column(enum_column_type(ReferralStatus, "referral_status"))
    proposed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    proposed_on: Mapped[dt.date] = mapped_column(Date)
    approved_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    approved_on: Mapped[dt.date | None] = mapped_column(Date)
    revoked_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    revoked_on: Mapped[dt.date | None] = mapped_column(Date)
    # Written at approval, and in its audit event (number approval_seq): what the bundle's
    # manifest must hash to, and the event whose proof the bundle carries.
    manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    approval_seq: Mapped[int | None] = mapped_column(BigInteger)
    # The built bundle: its blob's random id, and the SHA-256 and size of the file handed over.
    bundle_blob_id: Mapped[uuid.UUID | None] = mapped_column()
    bundle_sha256: Mapped[str | None] = mapped_column(String(64))
    bundle_size: Mapped[int | None] = mapped_column(BigInteger)
    intake_key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    content_key_version: Mapped[int] = mapped_column(Integer)
    sealed_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    spec_encrypted: Mapped[bytes] = mapped_column(LargeBinary)


# Re-sealed by `daylight keys rotate`, after labels and saved views.
RECIPIENT_SEALED_KEYS = SealedDataKeys(
    "referral recipients",
    ReferralRecipient,
    RECIPIENT_DATA_KEY,
    row_id=lambda recipient: str(recipient.id),
    lock_order=70,
)
REFERRAL_SEALED_KEYS = SealedDataKeys(
    "referrals", Referral, REFERRAL_DATA_KEY, row_id=lambda referral: str(referral.id), lock_order=80
)

# A sealed bundle is kept as a blob until its referral's case is deleted.
register_blob_names(Referral.bundle_blob_id)
