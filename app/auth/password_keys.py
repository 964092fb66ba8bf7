"""What a password unlocks: Argon2id derives a verifier and a key-encryption key (split by
HKDF); the verifier proves the password, the key-encryption key unwraps the personal private
key. The server stores neither the password nor anything that opens the key without it.

Argon2id is given the password's Unicode NFC form, so that "é" sent as one code point by one
device and as "e" plus a combining accent by another is one password. Accounts whose verifier
predates that (``password_form`` NULL) were derived from the password as typed: for them the
typed string and its NFC and NFD forms are all tried, and a login that succeeds re-wraps the
same personal key under the NFC form (`needs_rewrap`, `rewrap_personal_key`).

The derivation gate: each Argon2id run holds its whole memory cost (64 MiB by default) until it
ends, and nothing else bounds how many run at once: a flood of logins would take the process's
memory (20 at once took 1.1 GB). Every run here takes a turn of the process's `DerivationGate`
(``argon2_max_concurrent`` turns, one per usable core by default); a caller that finds them all
taken waits ``argon2_wait_seconds``, then is refused with 503 `TooManyLogins`, which changes
nothing (no failed login is counted: no password was checked). `_derive` is the only caller of
`kdf.derive_login_keys` in the application (tests/auth/test_argon2_gate.py checks it).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
import unicodedata
from collections.abc import Iterator, Sequence

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import PASSWORD_FORM_NFC, PERSONAL_PRIVATE_KEY, StaffAccount
from app.crypto import kdf, sealing
from app.crypto.integrity import public_key_mac
from app.custody.service import KEY_PAIR_EVENT, member_key_context
from app.kit.config import Settings
from app.kit.errors import ServiceUnavailable
from app.kit.server_secrets import ServerSecrets

# Salt for the Argon2id runs that only spend time (unknown accounts, forms not tried).
DUMMY_SALT = b"daylight-dummy-salt"[: kdf.SALT_BYTES]


class TooManyLogins(ServiceUnavailable):
    """Every Argon2id turn of this process stayed taken for ``argon2_wait_seconds``: 503 (the
    admission middleware adds Retry-After), and nothing about the account changed."""

    code = "busy"
    public_message = "Too many logins at once. Try again in a moment."


class DerivationGate:
    """At most ``limit`` Argon2id runs at once, across the threads of this process; a caller
    waits at most ``wait_seconds`` for a turn, then gets `TooManyLogins`.

    Held per password check, not per login and not per run: one turn covers the one to three
    runs of one check (`password_matches`, `spend_dummy_runs`) or the one run of a wrap. The
    runs of a turn go one after another in the holder's thread, each freeing its memory before
    the next takes it, so a turn holds one memory cost at a time and the peak is ``limit`` of
    them. Turns are never nested (only `_derive` takes one, and it calls nothing but Argon2id
    while holding it): a login that checks and then re-wraps takes two turns one after the
    other, so it never waits for a turn it holds itself, whatever the limit (1 included). A
    check, once admitted, runs whole: none of its runs is refused halfway, wasting the others.
    """

    def __init__(self, limit: int, wait_seconds: float) -> None:
        if limit < 1 or wait_seconds < 0:
            raise ValueError("a derivation gate needs a limit of one or more and a wait of zero or more")
        self.limit = limit
        self.wait_seconds = wait_seconds
        self._turns = threading.BoundedSemaphore(limit)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        if not self._turns.acquire(timeout=self.wait_seconds):
            raise TooManyLogins
        try:
            yield
        finally:
            self._turns.release()


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it), at least 1."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def derivation_limit(settings: Settings) -> int:
    """``argon2_max_concurrent``, or one per usable core when unset."""
    return settings.argon2_max_concurrent or usable_cores()


_gate_lock = threading.Lock()
_process_gate: DerivationGate | None = None


def configure_derivation_gate(settings: Settings) -> DerivationGate:
    """Size the process's gate from ``settings``: once, when the serving app is built.

    A gate of the same size is kept (apps built again with the same settings share it); another
    size replaces it, for the runs that start from then on. Until this is called the gate has
    the defaults of `Settings` (one turn per core, its default wait).
    """
    global _process_gate
    limit, wait = derivation_limit(settings), settings.argon2_wait_seconds
    with _gate_lock:
        if _process_gate is None or (_process_gate.limit, _process_gate.wait_seconds) != (limit, wait):
            _process_gate = DerivationGate(limit, wait)
        return _process_gate


def derivation_gate() -> DerivationGate:
    """The process's gate (made with the defaults of `Settings` if none was configured)."""
    global _process_gate
    with _gate_lock:
        if _process_gate is None:
            default_wait = Settings.model_fields["argon2_wait_seconds"].default
            _process_gate = DerivationGate(usable_cores(), float(default_wait))
        return _process_gate


def _derive(inputs: Sequence[tuple[str, bytes]], params: kdf.Argon2Parameters) -> list[kdf.LoginKeys]:
    """Argon2id of each (string, salt), one after another, within one turn of the gate."""
    with derivation_gate().turn():
        return [kdf.derive_login_keys(secret, salt, params) for secret, salt in inputs]


def argon2_parameters(settings: Settings) -> kdf.Argon2Parameters:
    return kdf.Argon2Parameters(
        time_cost=settings.argon2.time_cost,
        memory_cost_kib=settings.argon2.memory_cost_kib,
        parallelism=settings.argon2.parallelism,
    )


def set_password_and_new_key_pair(
    account: StaffAccount,
    password: str,
    *,
    settings: Settings,
    server_secrets: ServerSecrets,
    session: Session,
    actor: audit.Actor,
) -> sealing.PrivateKey:
    """Give the account a password and a fresh personal key pair, wrapped under the password.

    A new key pair, not a re-wrap: this is for activation and for an admin
    reset of a forgotten password, where the old private key is out of reach.
    Grants sealed to an old key pair no longer open; the caller deletes them.

    The key pair is an audit event, and that event's sequence number is the key's epoch,
    covered by the public key's MAC (app.custody.service, KEY_PAIR_EVENT): a grant refuses a
    public key whose epoch is not the newest in the log, so restoring an old key pair from
    an earlier copy of the database gets nothing sealed to it.
    """
    personal_private = sealing.generate_private_key()
    personal_public = personal_private.public_key()
    # Derived before the event is appended: on PostgreSQL an appended event holds the log's next
    # number until commit, and a derivation may first wait for a turn of the gate.
    wrapped = _wrapped(account, password, personal_private, settings)
    epoch = audit.record(
        session,
        actor,
        KEY_PAIR_EVENT,
        object_type="account",
        object_id=account.id,
        details={"fingerprint": key_fingerprint(personal_public.raw)},
    )
    account.public_key = personal_public.raw
    account.public_key_mac = public_key_mac(
        server_secrets.key_integrity_key, personal_public, *member_key_context(account.id, epoch)
    )
    for name, value in wrapped.items():
        setattr(account, name, value)
    return personal_private


def key_fingerprint(raw_public_key: bytes) -> str:
    """What a lead and a member compare in person before a grant: the first 80 bits of the
    SHA-256 of the public key, in groups of four hex digits."""
    digest = hashlib.sha256(raw_public_key).hexdigest()[:20]
    return " ".join(digest[i : i + 4] for i in range(0, 20, 4))


def normalised(password: str) -> str:
    """The string Argon2id is given for ``password``: its NFC form."""
    return unicodedata.normalize("NFC", password)


def typed_forms(password: str) -> tuple[str, ...]:
    """The strings a legacy verifier may have been derived from: as typed, NFC and NFD.

    Distinct and in that order; one string for most passwords (ASCII has one form). Their
    number depends on the typed string alone, never on an account.
    """
    return tuple(dict.fromkeys((password, normalised(password), unicodedata.normalize("NFD", password))))


def wrap_under_password(
    account: StaffAccount, password: str, personal_private: sealing.PrivateKey, settings: Settings
) -> None:
    """Wrap the personal private key under ``password`` (its NFC form), with a fresh salt and
    the current Argon2id cost."""
    for name, value in _wrapped(account, password, personal_private, settings).items():
        setattr(account, name, value)


def _wrapped(
    account: StaffAccount, password: str, personal_private: sealing.PrivateKey, settings: Settings
) -> dict[str, object]:
    """The column values of ``personal_private`` wrapped under ``password``."""
    salt = kdf.new_salt()
    params = argon2_parameters(settings)
    [login_keys] = _derive([(normalised(password), salt)], params)
    return {
        "password_salt": salt,
        "argon2_time_cost": params.time_cost,
        "argon2_memory_cost_kib": params.memory_cost_kib,
        "argon2_parallelism": params.parallelism,
        "login_verifier": login_keys.verifier,
        "password_form": PASSWORD_FORM_NFC,
        "wrapped_private_key": PERSONAL_PRIVATE_KEY.seal(
            login_keys.key_encryption_key, personal_private.raw, row_id=str(account.id)
        ),
    }


def _account_parameters(account: StaffAccount) -> kdf.Argon2Parameters:
    if (
        account.password_salt is None
        or account.argon2_time_cost is None
        or account.argon2_memory_cost_kib is None
        or account.argon2_parallelism is None
    ):
        raise ValueError("the account has no password yet")
    return kdf.Argon2Parameters(
        account.argon2_time_cost, account.argon2_memory_cost_kib, account.argon2_parallelism
    )


def password_matches(account: StaffAccount, password: str) -> kdf.LoginKeys | None:
    """The login keys when ``password`` is the account's, else None.

    One Argon2id run, at the account's cost, per string of `typed_forms`, whatever the
    account and whichever matches (no early exit): the time taken tells nothing about the
    account or the password. An "nfc" account is derived from the NFC form once, the other
    runs are spent on a dummy salt; a legacy one (``password_form`` NULL) from each form.
    """
    params = _account_parameters(account)
    salt = account.password_salt
    assert salt is not None  # noqa: S101 - checked by _account_parameters
    stored = account.login_verifier or b""
    forms = typed_forms(password)
    if account.password_form == PASSWORD_FORM_NFC:
        inputs = [(normalised(password), salt)] + [(password, DUMMY_SALT)] * (len(forms) - 1)
        login_keys = _derive(inputs, params)[0]
        return login_keys if hmac.compare_digest(login_keys.verifier, stored) else None
    matched = None
    for login_keys in _derive([(form, salt) for form in forms], params):
        if hmac.compare_digest(login_keys.verifier, stored) and matched is None:
            matched = login_keys
    return matched


def spend_dummy_runs(password: str, settings: Settings) -> None:
    """What `password_matches` costs, for a login that has no account to match against."""
    _derive([(form, DUMMY_SALT) for form in typed_forms(password)], argon2_parameters(settings))


def needs_rewrap(account: StaffAccount, settings: Settings) -> bool:
    """Whether a login that has the personal key should wrap it again: the verifier is of the
    password as typed, or was derived at a cost below the current one (time or memory)."""
    current = argon2_parameters(settings)
    return (
        account.password_form != PASSWORD_FORM_NFC
        or (account.argon2_time_cost or 0) < current.time_cost
        or (account.argon2_memory_cost_kib or 0) < current.memory_cost_kib
    )


def rewrap_personal_key(
    session: Session,
    account: StaffAccount,
    password: str,
    personal_private: sealing.PrivateKey,
    settings: Settings,
) -> bool:
    """Wrap the same personal private key again under the NFC form of ``password``, with a
    fresh salt and the current cost; the key pair, and every grant sealed to it, stay valid.

    Written only if the verifier is still the one the password was checked against: a
    password changed meanwhile (another session) is not overwritten with the old one.
    True when written.

    False too, written nothing, when the derivation gate stays full: the password and the code
    were accepted, and a login is not refused for an upgrade; the next login wraps again.
    """
    try:
        values = _wrapped(account, password, personal_private, settings)
    except TooManyLogins:
        return False
    written = session.execute(
        update(StaffAccount)
        .where(StaffAccount.id == account.id, StaffAccount.login_verifier == account.login_verifier)
        .values(values)
        .returning(StaffAccount.id)
        .execution_options(synchronize_session=False)
    ).first()
    # Read again on next use: what was written now, or what the other writer wrote.
    session.expire(account, list(values))
    return written is not None


def unwrap_personal_key(account: StaffAccount, login_keys: kdf.LoginKeys) -> sealing.PrivateKey:
    if account.wrapped_private_key is None:
        raise ValueError("the account has no key pair yet")
    return sealing.PrivateKey(
        PERSONAL_PRIVATE_KEY.open(
            login_keys.key_encryption_key, account.wrapped_private_key, row_id=str(account.id)
        )
    )
