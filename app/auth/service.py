"""Staff accounts, two-factor login and server-side sessions.

Login derives the password keys once (Argon2id, split by HKDF): the verifier
proves the password, the key-encryption key unwraps the personal private key,
which opens the member's intake key grants. Those unlocked keys are stored in
the session row under a key derived from the session token, which only the
cookie carries: the app process keeps no state, and a database copy holds no
usable key.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pyotp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import PERSONAL_PRIVATE_KEY, SESSION_KEYS, TOTP_SECRET, Role, StaffAccount, StaffSession
from app.auth.passwords import check_new_password
from app.auth.permissions import Permission, role_has
from app.crypto import kdf, sealing
from app.crypto.binding import bind
from app.crypto.errors import DecryptionError
from app.crypto.integrity import public_key_mac
from app.keys.service import staff_key_context, unlock_granted_keys
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets

TOTP_STEP_SECONDS = 30
LOCKOUT_THRESHOLD = 5
LOCKOUT_MAX = dt.timedelta(days=1)
STEP_UP_WINDOW = dt.timedelta(minutes=5)
# last_seen_at is written at most this often: one write per request would
# serialise every staff request on SQLite for no gain in idle-timeout accuracy.
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=30)
TOTP_DIGITS = 6
# Verified for unknown usernames so that they cost one Argon2id run too.
_DUMMY_SALT = b"daylight-dummy-salt"[: kdf.SALT_BYTES]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite returns naive datetimes; every time Daylight stores is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def argon2_parameters(settings: Settings) -> kdf.Argon2Parameters:
    return kdf.Argon2Parameters(
        time_cost=settings.argon2.time_cost,
        memory_cost_kib=settings.argon2.memory_cost_kib,
        parallelism=settings.argon2.parallelism,
    )


@dataclass(frozen=True, slots=True, repr=False)
class UnlockedKeys:
    """The private keys a login unlocked: the personal key and granted intake key versions."""

    personal: sealing.PrivateKey
    intake: Mapping[int, sealing.PrivateKey] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"UnlockedKeys(intake_versions={sorted(self.intake)})"

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "personal": base64.b64encode(self.personal.raw).decode(),
                "intake": {str(v): base64.b64encode(k.raw).decode() for v, k in self.intake.items()},
            }
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> UnlockedKeys:
        data = json.loads(raw)
        return cls(
            personal=sealing.PrivateKey(base64.b64decode(data["personal"])),
            intake={int(v): sealing.PrivateKey(base64.b64decode(k)) for v, k in data["intake"].items()},
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated staff member behind a request."""

    account_id: uuid.UUID
    username: str
    role: Role
    session_id: uuid.UUID
    keys: UnlockedKeys
    reauthenticated_at: dt.datetime
    # Per-session token for the staff UI's forms, derived from the cookie.
    csrf_token: str

    def can(self, permission: Permission) -> bool:
        return role_has(self.role, permission)

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(id=self.account_id, username=self.username, role=self.role.value)

    def intake_private_key(self, version: int) -> sealing.PrivateKey | None:
        return self.keys.intake.get(version)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def set_password_and_new_key_pair(
    account: StaffAccount, password: str, *, settings: Settings, server_secrets: ServerSecrets
) -> sealing.PrivateKey:
    """Give the account a password and a fresh personal key pair, wrapped under the password.

    A new key pair, not a re-wrap: this is for activation and for an admin
    reset of a forgotten password, where the old private key is out of reach.
    Grants sealed to an old key pair no longer open; the caller deletes them.
    """
    personal_private = sealing.generate_private_key()
    personal_public = personal_private.public_key()
    account.public_key = personal_public.raw
    account.public_key_mac = public_key_mac(
        server_secrets.key_integrity_key, personal_public, *staff_key_context(account.id)
    )
    _wrap_under_password(account, password, personal_private, settings)
    return personal_private


def _wrap_under_password(
    account: StaffAccount, password: str, personal_private: sealing.PrivateKey, settings: Settings
) -> None:
    salt = kdf.new_salt()
    params = argon2_parameters(settings)
    login_keys = kdf.derive_login_keys(password, salt, params)
    account.password_salt = salt
    account.argon2_time_cost = params.time_cost
    account.argon2_memory_cost_kib = params.memory_cost_kib
    account.argon2_parallelism = params.parallelism
    account.login_verifier = login_keys.verifier
    account.wrapped_private_key = PERSONAL_PRIVATE_KEY.seal(
        login_keys.key_encryption_key, personal_private.raw, row_id=str(account.id)
    )


def set_totp_secret(
    account: StaffAccount, totp_secret: str, server_secrets: ServerSecrets, *, confirmed: bool
) -> None:
    account.totp_secret_encrypted = TOTP_SECRET.seal(
        server_secrets.totp_key, totp_secret.encode(), row_id=str(account.id)
    )
    account.totp_confirmed = confirmed
    account.totp_last_step = 0


def totp_secret_of(account: StaffAccount, totp_key: bytes) -> str:
    if account.totp_secret_encrypted is None:
        raise ValueError("no TOTP secret enrolled")
    return TOTP_SECRET.open(totp_key, account.totp_secret_encrypted, row_id=str(account.id)).decode()


def create_account(
    session: Session,
    *,
    username: str,
    role: Role,
    password: str,
    totp_secret: str,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> tuple[StaffAccount, sealing.PrivateKey]:
    """An account ready to log in (demo, tests, recovery tooling); the admin flow is
    `accounts.invite_account`. Returns the unwrapped personal private key too."""
    account = StaffAccount(
        id=uuid.uuid4(),
        username=username,
        role=role,
        is_active=True,
        totp_last_step=0,
        failed_logins=0,
        created_on=utc_now().date(),
    )
    personal_private = set_password_and_new_key_pair(
        account, password, settings=settings, server_secrets=server_secrets
    )
    set_totp_secret(account, totp_secret, server_secrets, confirmed=True)
    session.add(account)
    session.flush()
    return account, personal_private


def accept_totp(session: Session, account: StaffAccount, otp: str, totp_key: bytes, now: dt.datetime) -> bool:
    """Accept a code of the current step or one step either side, never a step already used."""
    totp = pyotp.TOTP(totp_secret_of(account, totp_key), digits=TOTP_DIGITS, interval=TOTP_STEP_SECONDS)
    current_step = int(now.timestamp()) // TOTP_STEP_SECONDS
    accepted_step = None
    typed = otp.strip().encode("utf-8")
    for step in (current_step - 1, current_step, current_step + 1):
        if hmac.compare_digest(totp.generate_otp(step).encode(), typed) and step > account.totp_last_step:
            accepted_step = step
    if accepted_step is None:
        return False
    # A conditional UPDATE, not read-then-write: of two concurrent logins with
    # the same code, the database lets exactly one advance the step.
    advanced = session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id, StaffAccount.totp_last_step < accepted_step)
        .values(totp_last_step=accepted_step)
        .returning(StaffAccount.id)
        .execution_options(synchronize_session=False)
    ).first()
    return advanced is not None


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    otp: str,
    settings: Settings,
    totp_key: bytes,
    now: dt.datetime | None = None,
) -> tuple[StaffAccount, UnlockedKeys] | None:
    """The account and its unlocked keys, or None: the same answer for every kind of failure.

    Unknown, inactive, not yet activated and locked-out accounts all cost one
    Argon2id run and get None, so neither the answer nor its timing tells
    which usernames exist or which are locked.
    """
    now = now or utc_now()
    account = session.scalars(select(StaffAccount).where(StaffAccount.username == username)).first()
    if account is None or not account.can_log_in or is_locked(account, now):
        kdf.derive_login_keys(password, _DUMMY_SALT, argon2_parameters(settings))
        # The typed username is not recorded: people type passwords into it.
        audit.record(
            session,
            account_actor(account) if account else audit.Actor(None, None, None),
            "auth.login",
            object_type="account",
            object_id=account.id if account else None,
            outcome=audit.Outcome.DENIED if account else audit.Outcome.FAILURE,
            details={"reason": _refusal_reason(account, now)},
        )
        return None
    login_keys = derive_account_login_keys(account, password)
    if not hmac.compare_digest(login_keys.verifier, account.login_verifier or b"") or not accept_totp(
        session, account, otp, totp_key, now
    ):
        record_failed_login(session, account, now)
        audit.record(
            session,
            account_actor(account),
            "auth.login",
            object_type="account",
            object_id=account.id,
            outcome=audit.Outcome.FAILURE,
            details={"reason": "credentials"},
        )
        return None
    session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id)
        .values(failed_logins=0, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    audit.record(session, account_actor(account), "auth.login", object_type="account", object_id=account.id)
    personal = unwrap_personal_key(account, login_keys)
    keys = UnlockedKeys(personal=personal, intake=unlock_granted_keys(session, account, personal))
    session.flush()
    return account, keys


def account_actor(account: StaffAccount) -> audit.Actor:
    return audit.Actor(id=account.id, username=account.username, role=Role(account.role).value)


def _refusal_reason(account: StaffAccount | None, now: dt.datetime) -> str:
    if account is None:
        return "unknown_account"
    if is_locked(account, now):
        return "locked"
    return "inactive" if not account.is_active else "not_activated"


def is_locked(account: StaffAccount, now: dt.datetime) -> bool:
    return account.locked_until is not None and now < as_utc(account.locked_until)


def lockout_duration(failures: int) -> dt.timedelta | None:
    """Exponential back-off: 1 minute at the fifth consecutive failure, doubling, at most a day."""
    if failures < LOCKOUT_THRESHOLD:
        return None
    return min(dt.timedelta(minutes=2 ** (failures - LOCKOUT_THRESHOLD)), LOCKOUT_MAX)


def record_failed_login(session: Session, account: StaffAccount, now: dt.datetime) -> None:
    # Incremented in the database, so concurrent failures are all counted.
    failures = session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id)
        .values(failed_logins=StaffAccount.failed_logins + 1)
        .returning(StaffAccount.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    duration = lockout_duration(failures)
    if duration is not None:
        session.execute(
            update(StaffAccount)
            .where(StaffAccount.id == account.id)
            .values(locked_until=now + duration)
            .execution_options(synchronize_session=False)
        )
        audit.record(
            session,
            account_actor(account),
            "auth.lockout",
            object_type="account",
            object_id=account.id,
            details={"failures": failures, "minutes": int(duration.total_seconds() // 60)},
        )


def derive_account_login_keys(account: StaffAccount, password: str) -> kdf.LoginKeys:
    if (
        account.password_salt is None
        or account.argon2_time_cost is None
        or account.argon2_memory_cost_kib is None
        or account.argon2_parallelism is None
    ):
        raise ValueError("the account has no password yet")
    params = kdf.Argon2Parameters(
        account.argon2_time_cost, account.argon2_memory_cost_kib, account.argon2_parallelism
    )
    return kdf.derive_login_keys(password, account.password_salt, params)


def password_matches(account: StaffAccount, password: str) -> kdf.LoginKeys | None:
    """The login keys when ``password`` is the account's, else None (always one Argon2id run)."""
    login_keys = derive_account_login_keys(account, password)
    if account.login_verifier is None or not hmac.compare_digest(login_keys.verifier, account.login_verifier):
        return None
    return login_keys


def unwrap_personal_key(account: StaffAccount, login_keys: kdf.LoginKeys) -> sealing.PrivateKey:
    if account.wrapped_private_key is None:
        raise ValueError("the account has no key pair yet")
    return sealing.PrivateKey(
        PERSONAL_PRIVATE_KEY.open(
            login_keys.key_encryption_key, account.wrapped_private_key, row_id=str(account.id)
        )
    )


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


def start_session(
    session: Session, account: StaffAccount, keys: UnlockedKeys, now: dt.datetime | None = None
) -> str:
    """A new session (always a new id, never a reused one); returns the cookie value."""
    now = now or utc_now()
    token = secrets.token_bytes(32)
    session_id = uuid.uuid4()
    session.add(
        StaffSession(
            id=session_id,
            token_hash=_token_lookup_hash(token),
            account_id=account.id,
            created_at=now,
            last_seen_at=now,
            reauthenticated_at=now,
            unlocked_keys_encrypted=SESSION_KEYS.seal(
                _token_session_key(token), keys.to_bytes(), row_id=str(session_id)
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
    session: Session, cookie_value: str, settings: Settings, now: dt.datetime | None = None
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


def change_password(
    session: Session, principal: Principal, current_password: str, new_password: str, *, settings: Settings
) -> bool:
    """Re-wrap the personal key under a new password; end the member's other sessions.

    The key pair stays the same, so key grants sealed to it keep working.
    False when the current password is wrong.
    """
    account = session.get_one(StaffAccount, principal.account_id)
    check_new_password(new_password, username=account.username)
    if password_matches(account, current_password) is None:
        record_failed_login(session, account, utc_now())
        audit.record(
            session,
            principal.actor,
            "auth.password_change",
            object_type="account",
            object_id=account.id,
            outcome=audit.Outcome.FAILURE,
        )
        return False
    _wrap_under_password(account, new_password, principal.keys.personal, settings)
    revoke_sessions(session, account.id, keep_session_id=principal.session_id)
    audit.record(
        session, principal.actor, "auth.password_change", object_type="account", object_id=account.id
    )
    session.flush()
    return True
