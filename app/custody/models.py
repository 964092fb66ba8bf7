from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Date, ForeignKey, LargeBinary, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import SealedColumn
from app.kit.db import Base

# The intake private key sealed to the recovery key pair (derived from the
# recovery key printed once by `daylight init`), and to each cleared member.
INTAKE_KEY_RECOVERY_WRAP = SealedColumn("intake_keys", "recovery_wrapped_private_key")
INTAKE_KEY_GRANT = SealedColumn("intake_key_grants", "sealed_private_key")


class IntakeKey(Base):
    """One version of the organisation's intake key pair; only its public half is in clear."""

    __tablename__ = "intake_keys"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_mac: Mapped[bytes] = mapped_column(LargeBinary)
    recovery_public_key: Mapped[bytes] = mapped_column(LargeBinary)
    recovery_wrapped_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_on: Mapped[dt.date] = mapped_column(Date)


class IntakeKeyGrant(Base):
    """The intake private key of one version, sealed to one member's personal public key."""

    __tablename__ = "intake_key_grants"
    __table_args__ = (UniqueConstraint("account_id", "key_version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True
    )
    key_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"))
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    granted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    granted_on: Mapped[dt.date] = mapped_column(Date)
    # The server's MAC over member, version, sealed key and the member's revocation epoch at the
    # time of the grant (app.custody.service.grant_mac): a revoked grant put back by someone who
    # can write the database carries an older epoch and no longer opens.
    row_mac: Mapped[bytes | None] = mapped_column(LargeBinary)


class IntakeKeyRotation(Base):
    """A rotation in progress from one intake key version to the next (`app.keys.rotation`).

    Its row exists from the moment the new key is created until the old key is destroyed;
    an interrupted rotation is resumed from it. At most one at a time.
    """

    __tablename__ = "intake_key_rotations"

    to_version: Mapped[int] = mapped_column(
        ForeignKey("intake_keys.version"), primary_key=True, autoincrement=False
    )
    from_version: Mapped[int] = mapped_column(ForeignKey("intake_keys.version"), unique=True)
    started_on: Mapped[dt.date] = mapped_column(Date)
