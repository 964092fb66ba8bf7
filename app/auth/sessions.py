"""Server-side staff sessions: the cookie carries a random token; the database holds its hash
and the unlocked keys sealed under a key derived from the token, so a database copy holds no
usable key and the app process keeps no state. Also the CSRF token derived from the cookie,
step-up (password again before sensitive actions) and revocation."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.lockout import record_failed_login
from app.auth.models import SESSION_KEYS, Role, StaffAccount, StaffSession
from app.auth.password_keys import password_matches
from app.auth.principal import Principal, UnlockedKeys
from app.crypto.binding import bind
from app.crypto.errors import DecryptionError
from app.crypto.integrity import row_is_authentic, row_mac
from app.kit.clock import as_utc, utc_now
from app.kit.config import Settings

logger = logging.getLogger("daylight.auth")

STEP_UP_WINDOW = dt.timedelta(minutes=5)


# last_seen_at is written at most this often: one write per request would
# serialise every staff request on SQLite for no gain in idle-timeout accuracy.
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=30)


def _token_lookup_hash(token: bytes) -> bytes:
    return hashlib.sha256(bind("daylight/session-lookup/v1", token)).digest()


def _token_session_key(token: bytes) -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=bind("daylight/session-key/v1")).derive(
        token
    )


def encode_token(token: bytes) -> str:
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def decode_token(value: str) -> bytes | None:
    try:
        token = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, TypeError):
        return None
    return token if len(token) == 32 else None


SESSION_RECORD = "staff_session/v1"


def _session_fields(
    session_id: uuid.UUID, token_hash: bytes, account_id: uuid.UUID, created_at: dt.datetime
) -> tuple[str, bytes, str, int]:
    # Whole seconds of an aware UTC time: the same on both databases (SQLite returns naive times).
    return (str(session_id), token_hash, str(account_id), int(as_utc(created_at).timestamp()))


def start_session(
    session: Session,
    account: StaffAccount,
    keys: UnlockedKeys,
    *,
    integrity_key: bytes,
    now: dt.datetime | None = None,
) -> str:
    """A new session (always a new id, never a reused one); returns the cookie value.

    The row carries a MAC under the key-integrity key over its token hash, account and start:
    the cookie alone seals the unlocked keys, so without the MAC someone who can write the
    database could insert a session with a token of their own choosing and act as any
    account, or move a session to another account."""
    now = now or utc_now()
    token = secrets.token_bytes(32)
    session_id = uuid.uuid4()
    token_hash = _token_lookup_hash(token)
    session.add(
        StaffSession(
            id=session_id,
            token_hash=token_hash,
            account_id=account.id,
            created_at=now,
            last_seen_at=now,
            reauthenticated_at=now,
            unlocked_keys_encrypted=SESSION_KEYS.seal(
                _token_session_key(token), keys.to_bytes(), row_id=str(session_id)
            ),
            row_mac=row_mac(
                integrity_key, SESSION_RECORD, *_session_fields(session_id, token_hash, account.id, now)
            ),
        )
    )
    session.flush()
    return encode_token(token)


@dataclass(frozen=True, slots=True)
class ExpiredSession:
    """A session past its idle or absolute timeout, or of a deactivated account."""

    session_id: uuid.UUID


def resume_session(
    session: Session,
    cookie_value: str,
    settings: Settings,
    *,
    integrity_key: bytes,
    now: dt.datetime | None = None,
) -> Principal | ExpiredSession | None:
    """The principal for a session cookie; ExpiredSession to destroy; None when unknown."""
    now = now or utc_now()
    token = decode_token(cookie_value)
    if token is None:
        return None
    row = session.execute(
        select(StaffSession, StaffAccount)
        .join(StaffAccount, StaffAccount.id == StaffSession.account_id)
        .where(StaffSession.token_hash == _token_lookup_hash(token))
    ).first()
    if row is None:
        return None
    staff_session, account = row
    fields = _session_fields(
        staff_session.id, staff_session.token_hash, staff_session.account_id, staff_session.created_at
    )
    if not row_is_authentic(integrity_key, staff_session.row_mac, SESSION_RECORD, *fields):
        # A session the server never started: refused, ended like an expired one (the caller
        # commits that), and reported to admins and auditors.
        logger.error("integrity alert: a staff session row failed its MAC; refused")
        audit.record(
            session,
            audit.SYSTEM,
            "integrity.alert",
            object_type="staff_session",
            object_id=staff_session.id,
            outcome=audit.Outcome.FAILURE,
            details={"account": str(staff_session.account_id)},
        )
        return ExpiredSession(staff_session.id)
    idle_deadline = as_utc(staff_session.last_seen_at) + dt.timedelta(minutes=settings.session_idle_minutes)
    absolute_deadline = as_utc(staff_session.created_at) + dt.timedelta(hours=settings.session_absolute_hours)
    if not account.is_active or now >= idle_deadline or now >= absolute_deadline:
        return ExpiredSession(staff_session.id)
    try:
        keys = UnlockedKeys.from_bytes(
            SESSION_KEYS.open(
                _token_session_key(token), staff_session.unlocked_keys_encrypted, row_id=str(staff_session.id)
            )
        )
    except DecryptionError:
        return None
    if now - as_utc(staff_session.last_seen_at) >= LAST_SEEN_RESOLUTION:
        staff_session.last_seen_at = now
        session.flush()
    return Principal(
        account_id=account.id,
        username=account.username,
        role=Role(account.role),
        session_id=staff_session.id,
        keys=keys,
        reauthenticated_at=as_utc(staff_session.reauthenticated_at),
        csrf_token=_csrf_token(token),
    )


def _csrf_token(token: bytes) -> str:
    # Derived from the cookie's token: an attacker's page can neither read
    # the cookie nor compute this, and the server stores nothing extra.
    return encode_token(
        HKDFExpand(algorithm=hashes.SHA256(), length=32, info=bind("daylight/csrf/v1")).derive(token)
    )


def end_session(session: Session, session_id: uuid.UUID) -> None:
    session.execute(delete(StaffSession).where(StaffSession.id == session_id))


def log_out(session: Session, principal: Principal) -> None:
    end_session(session, principal.session_id)
    audit.record(session, principal.actor, "auth.logout")


def log_out_everywhere(session: Session, principal: Principal) -> None:
    revoke_sessions(session, principal.account_id)
    audit.record(session, principal.actor, "auth.logout_everywhere")


def revoke_sessions(
    session: Session, account_id: uuid.UUID, *, keep_session_id: uuid.UUID | None = None
) -> None:
    """End every session of an account (but ``keep_session_id``), with the keys sealed in them.

    Called on every change that must reach sessions at once: deactivation,
    role change, password change or reset, 2FA reset, key grant revocation.
    """
    statement = delete(StaffSession).where(StaffSession.account_id == account_id)
    if keep_session_id is not None:
        statement = statement.where(StaffSession.id != keep_session_id)
    session.execute(statement)


def sessions_of(session: Session, account_id: uuid.UUID) -> list[StaffSession]:
    return list(
        session.scalars(
            select(StaffSession)
            .where(StaffSession.account_id == account_id)
            .order_by(StaffSession.created_at.desc())
        )
    )


def recently_reauthenticated(principal: Principal, now: dt.datetime | None = None) -> bool:
    return (now or utc_now()) - principal.reauthenticated_at <= STEP_UP_WINDOW


def step_up(session: Session, principal: Principal, password: str) -> bool:
    """Confirm the password again before a sensitive action; True when it matched."""
    account = session.get_one(StaffAccount, principal.account_id)
    if password_matches(account, password) is None:
        record_failed_login(session, account, utc_now())
        audit.record(session, principal.actor, "auth.step_up", outcome=audit.Outcome.FAILURE)
        return False
    session.execute(
        update(StaffSession)
        .where(StaffSession.id == principal.session_id)
        .values(reauthenticated_at=utc_now())
    )
    audit.record(session, principal.actor, "auth.step_up")
    return True
