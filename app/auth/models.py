from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, Date, DateTime, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto.contracts import EnvelopeColumn
from app.kit.db import Base, enum_column_type

# The member's personal private key, under the key-encryption key derived from
# their password: a database copy alone cannot unwrap it.
PERSONAL_PRIVATE_KEY = EnvelopeColumn("staff_accounts", "wrapped_private_key")
# TOTP secrets under a server-side key kept outside the database (secrets dir),
# so a database copy alone cannot mint one-time codes.
TOTP_SECRET = EnvelopeColumn("staff_accounts", "totp_secret_encrypted")
# The keys unlocked at login, under a key that only the session cookie carries.
SESSION_KEYS = EnvelopeColumn("staff_sessions", "unlocked_keys_encrypted")


# The one value of `StaffAccount.password_form` (NULL: the password as typed).
PASSWORD_FORM_NFC = "nfc"  # noqa: S105 - a Unicode normal form, not a password


class Role(StrEnum):
    CASEWORKER = "caseworker"
    LEAD = "lead"
    ADMIN = "admin"
    AUDITOR = "auditor"


class StaffAccount(Base):
    __tablename__ = "staff_accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(enum_column_type(Role, "role"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    # Password and key columns stay empty until the member activates the
    # account through their one-time link: the admin who creates it never
    # knows the password, and no key pair exists before the member does.
    password_salt: Mapped[bytes | None] = mapped_column(LargeBinary)
    argon2_time_cost: Mapped[int | None] = mapped_column(Integer)
    argon2_memory_cost_kib: Mapped[int | None] = mapped_column(Integer)
    argon2_parallelism: Mapped[int | None] = mapped_column(Integer)
    login_verifier: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Which string the verifier was derived from: "nfc", the password's Unicode NFC form
    # (PASSWORD_FORM_NFC), or NULL, the password as typed (before that form was recorded).
    # A NULL account moves to "nfc" at its next login, keeping its key pair.
    password_form: Mapped[str | None] = mapped_column(String(8))

    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    public_key_mac: Mapped[bytes | None] = mapped_column(LargeBinary)
    wrapped_private_key: Mapped[bytes | None] = mapped_column(LargeBinary)

    totp_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # False between an enrolment link's creation (activation, 2FA reset) and
    # the member proving the new secret with a code: no login meanwhile.
    totp_confirmed: Mapped[bool] = mapped_column(Boolean, default=False)
    # The last accepted TOTP time step: a code is never accepted twice.
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    # Per-account lockout with exponential back-off; there is no per-IP state.
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    created_on: Mapped[dt.date] = mapped_column(Date)

    # When a lead confirmed that the key pair made through the member's last activation or
    # password-reset link is the member's own (by comparing its fingerprint with the member, in
    # person or on a channel they trust), and who. NULL: awaiting confirmation, and no key grant
    # is offered. The admin who issued the link could have opened it themselves; this is what
    # keeps that from going unnoticed (app.auth.confirmation).
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    confirmed_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )

    @property
    def can_log_in(self) -> bool:
        return self.is_active and self.login_verifier is not None and self.totp_confirmed


class StaffSession(Base):
    """A server-side session. The row alone unlocks nothing: the key is in the cookie."""

    __tablename__ = "staff_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    unlocked_keys_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # When the member last typed their password in this session (login or
    # step-up): key grants, exports and deletions need it to be recent.
    reauthenticated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # The server's MAC over id, token hash, account and start (app.auth.sessions).
    row_mac: Mapped[bytes | None] = mapped_column(LargeBinary)


class LinkPurpose(StrEnum):
    ACTIVATION = "activation"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a link purpose, not a password
    TOTP_RESET = "totp_reset"


class AccountLink(Base):
    """A one-time link an admin hands to a member: single use, valid 24 hours.

    Only a hash of the link's token is stored; the admin sees the link once.
    """

    __tablename__ = "account_links"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[LinkPurpose] = mapped_column(enum_column_type(LinkPurpose, "purpose"))
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="SET NULL")
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class StaffPasskey(Base):
    """A WebAuthn credential a member enrolled as their second factor (app.auth.passkeys).

    Only public material: the credential id and its COSE public key. The row carries a MAC under
    the server's key-integrity key, so that someone who can write the database but not read the
    server's secrets cannot enrol an authenticator of their own for a member."""

    __tablename__ = "staff_passkeys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("staff_accounts.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    credential_id: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The authenticator's signature counter (up to 2**32 - 1); 0 for authenticators that keep
    # none (most synced passkeys). A counter that goes backwards means a cloned authenticator.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when an assertion's counter went backwards: the passkey is refused from then on.
    clone_suspected_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    row_mac: Mapped[bytes] = mapped_column(LargeBinary)
