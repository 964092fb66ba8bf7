"""Passkeys (WebAuthn) as the staff second factor: enrolment, assertion, revocation.

Why: staff of these organisations are targets of state phishing, and a phishing kit relays a
TOTP code in real time. A passkey's assertion is signed over the origin the browser was really
on, so an assertion made on a look-alike site (or relayed through one) fails here; and the
server holds only public keys, so a seized server yields no second factor at all.

The ceremony follows py_webauthn's verification (``webauthn`` on PyPI): user verification
required, attestation "none", discoverable (resident) credentials. Login asks for any
discoverable credential of this site (no allow-list): an allow-list per username would tell
whoever types a username whether that account exists and has passkeys.

Challenges are stateless, so that an unauthenticated visitor cannot make the server store
anything: a random nonce and the time, MACed under a key derived from the server's
key-integrity key and bound to what the ceremony belongs to (the pre-login cookie, the staff
session, or the one-time link). A challenge is good for ``CHALLENGE_LIFETIME``.

Each passkey row carries a row MAC (app.crypto.integrity), so that someone who can write the
database but not read the server's secrets cannot enrol an authenticator of their own.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import uuid
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from sqlalchemy import select, update
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from app.audit_log import events as audit
from app.auth.models import StaffAccount, StaffPasskey
from app.auth.principal import account_actor
from app.crypto.binding import bind
from app.crypto.integrity import row_mac
from app.kit.clock import utc_now
from app.kit.errors import AppError, NotFound

logger = logging.getLogger(__name__)

CHALLENGE_LIFETIME = dt.timedelta(minutes=5)
# A WebAuthn response is a few KB (attestation "none"); anything longer is not one.
MAX_RESPONSE_CHARS = 16_384
PASSKEY_RECORD = "staff_passkey/v1"
RELYING_PARTY_NAME = "Daylight staff"
_NONCE_BYTES = 16
_MAC_BYTES = 16


class PasskeyRejected(AppError):
    status = 422
    code = "passkey_rejected"
    public_message = "The passkey could not be verified. Try again, or use another passkey."


class PasskeysUnavailable(AppError):
    status = 409
    code = "passkeys_unavailable"
    public_message = (
        "Passkeys need the staff app's public address: set DAYLIGHT_STAFF_ORIGIN "
        "(for example https://staff.example.org)."
    )


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who the passkeys belong to: the staff app's origin and, from it, the WebAuthn RP ID."""

    origin: str

    @property
    def id(self) -> str:
        return urlsplit(self.origin).hostname or ""


def relying_party(configured_origin: str | None, request_origin: str | None) -> RelyingParty:
    """The configured staff origin; in development on loopback, the request's own origin.

    Never the Host header in production: a relay that sent its own Host would otherwise choose
    the origin its victims' assertions are checked against."""
    origin = configured_origin.rstrip("/") if configured_origin is not None else request_origin
    if origin is None:
        raise PasskeysUnavailable
    rp = RelyingParty(origin)
    try:
        ipaddress.ip_address(rp.id.strip("[]"))
    except ValueError:
        return rp
    # WebAuthn binds a credential to a domain; a site reached by IP address cannot have one.
    raise PasskeysUnavailable


# --- Challenges --------------------------------------------------------------------------------


class Ceremony(StrEnum):
    LOGIN = "login"
    ENROL = "enrol"


def _challenge_key(key_integrity_key: bytes) -> bytes:
    return HKDFExpand(
        algorithm=hashes.SHA256(), length=32, info=bind("daylight/webauthn-challenge-key/v1")
    ).derive(key_integrity_key)


def _challenge_mac(key: bytes, ceremony: Ceremony, binding: bytes, nonce: bytes, issued: bytes) -> bytes:
    message = bind("daylight/webauthn-challenge/v1", ceremony.value, binding, nonce, issued)
    return hmac.new(_challenge_key(key), message, hashlib.sha256).digest()[:_MAC_BYTES]


def new_challenge(
    key_integrity_key: bytes, ceremony: Ceremony, binding: bytes, now: dt.datetime | None = None
) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    issued = int((now or utc_now()).timestamp()).to_bytes(8, "big")
    return nonce + issued + _challenge_mac(key_integrity_key, ceremony, binding, nonce, issued)


def challenge_is_ours(
    key_integrity_key: bytes,
    ceremony: Ceremony,
    binding: bytes,
    challenge: bytes,
    now: dt.datetime | None = None,
) -> bool:
    """True for a challenge this server issued for this ceremony and binding, still fresh."""
    if len(challenge) != _NONCE_BYTES + 8 + _MAC_BYTES:
        return False
    nonce, issued, mac = (
        challenge[:_NONCE_BYTES],
        challenge[_NONCE_BYTES:-_MAC_BYTES],
        challenge[-_MAC_BYTES:],
    )
    if not hmac.compare_digest(mac, _challenge_mac(key_integrity_key, ceremony, binding, nonce, issued)):
        return False
    age = (now or utc_now()).timestamp() - int.from_bytes(issued, "big")
    return -60 <= age <= CHALLENGE_LIFETIME.total_seconds()


def _b64url_decode(value: object) -> bytes | None:
    if not isinstance(value, str) or len(value) > MAX_RESPONSE_CHARS:
        return None
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None


def parse_response(raw: str | None) -> dict[str, Any] | None:
    """A credential response as the browser's script posted it (JSON), or None."""
    if not raw or len(raw) > MAX_RESPONSE_CHARS:
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _client_challenge(credential: dict[str, Any]) -> bytes | None:
    """The challenge the browser says it signed (checked against ours before the library runs)."""
    response = credential.get("response")
    client_data = _b64url_decode(response.get("clientDataJSON") if isinstance(response, dict) else None)
    if client_data is None:
        return None
    try:
        challenge = json.loads(client_data).get("challenge")
    except (ValueError, AttributeError):
        return None
    return _b64url_decode(challenge)


def _our_challenge(
    credential: dict[str, Any], key_integrity_key: bytes, ceremony: Ceremony, binding: bytes
) -> bytes:
    challenge = _client_challenge(credential)
    if challenge is None or not challenge_is_ours(key_integrity_key, ceremony, binding, challenge):
        raise PasskeyRejected
    return challenge


# --- Options the page hands to the browser -----------------------------------------------------


def registration_options(
    rp: RelyingParty, account: StaffAccount, existing: list[StaffPasskey], challenge: bytes
) -> str:
    options = generate_registration_options(
        rp_id=rp.id,
        rp_name=RELYING_PARTY_NAME,
        user_name=account.username,
        # The account id, not the username: the authenticator stores it, and a username may
        # itself say who the member is.
        user_id=account.id.bytes,
        challenge=challenge,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=p.credential_id) for p in existing],
    )
    return options_to_json(options)


def authentication_options(rp: RelyingParty, challenge: bytes) -> str:
    options = generate_authentication_options(
        rp_id=rp.id, challenge=challenge, user_verification=UserVerificationRequirement.REQUIRED
    )
    return options_to_json(options)


# --- Stored passkeys ---------------------------------------------------------------------------


def _mac(integrity_key: bytes, passkey: StaffPasskey) -> bytes:
    return row_mac(
        integrity_key,
        PASSKEY_RECORD,
        str(passkey.id),
        str(passkey.account_id),
        passkey.credential_id,
        passkey.public_key,
    )


def is_authentic(integrity_key: bytes, passkey: StaffPasskey) -> bool:
    return hmac.compare_digest(_mac(integrity_key, passkey), passkey.row_mac or b"")


def passkeys_of(session: Session, account_id: uuid.UUID) -> list[StaffPasskey]:
    """Every passkey the member enrolled, newest first, revoked ones included (for the page)."""
    return list(
        session.scalars(
            select(StaffPasskey)
            .where(StaffPasskey.account_id == account_id)
            .order_by(StaffPasskey.created_at.desc())
        )
    )


def usable(passkey: StaffPasskey, integrity_key: bytes) -> bool:
    return (
        passkey.revoked_at is None
        and passkey.clone_suspected_at is None
        and is_authentic(integrity_key, passkey)
    )


def has_usable_passkey(session: Session, account_id: uuid.UUID, integrity_key: bytes) -> bool:
    return any(usable(p, integrity_key) for p in passkeys_of(session, account_id))


def enrol(
    session: Session,
    account: StaffAccount,
    *,
    name: str,
    response_json: str | None,
    rp: RelyingParty,
    key_integrity_key: bytes,
    binding: bytes,
    actor: audit.Actor,
) -> StaffPasskey:
    """Verify a registration response for ``account`` and store the new passkey."""
    credential = parse_response(response_json)
    name = " ".join(name.split())[:64]
    if credential is None or not name:
        raise PasskeyRejected("Name the passkey, then create it with your authenticator.")
    challenge = _our_challenge(credential, key_integrity_key, Ceremony.ENROL, binding)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            require_user_verification=True,
        )
    except (InvalidRegistrationResponse, ValueError, KeyError, TypeError):
        # The library's message may quote the response; the client gets ours only.
        raise PasskeyRejected from None
    taken = session.scalar(
        select(StaffPasskey.id).where(StaffPasskey.credential_id == verified.credential_id)
    )
    if taken is not None:
        raise PasskeyRejected("This passkey is already enrolled.")
    passkey = StaffPasskey(
        id=uuid.uuid4(),
        account_id=account.id,
        name=name,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        created_at=utc_now(),
    )
    passkey.row_mac = _mac(key_integrity_key, passkey)
    session.add(passkey)
    session.flush()
    audit.record(
        session,
        actor,
        "auth.passkey_enrol",
        object_type="account",
        object_id=account.id,
        details={"passkey": str(passkey.id)},
    )
    return passkey


def revoke(session: Session, account_id: uuid.UUID, passkey_id: uuid.UUID, *, actor: audit.Actor) -> None:
    passkey = session.get(StaffPasskey, passkey_id)
    if passkey is None or passkey.account_id != account_id:
        raise NotFound
    if passkey.revoked_at is None:
        passkey.revoked_at = utc_now()
        audit.record(
            session,
            actor,
            "auth.passkey_revoke",
            object_type="account",
            object_id=account_id,
            details={"passkey": str(passkey.id)},
        )
    session.flush()


def revoke_all(
    session: Session, account_id: uuid.UUID, *, actor: audit.Actor, keep: uuid.UUID | None = None
) -> None:
    """Revoke every passkey of the member but ``keep`` (a second-factor reset)."""
    for passkey in passkeys_of(session, account_id):
        if passkey.id != keep and passkey.revoked_at is None:
            revoke(session, account_id, passkey.id, actor=actor)


class AssertionOutcome(Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    CLONE_SUSPECTED = "clone_suspected"


def check_assertion(
    session: Session,
    account: StaffAccount,
    credential: dict[str, Any] | None,
    *,
    rp: RelyingParty,
    key_integrity_key: bytes,
    binding: bytes,
) -> AssertionOutcome:
    """Whether ``credential`` is a fresh, user-verified assertion by one of the member's usable
    passkeys, made on our origin. A valid signature whose counter did not advance past the
    stored one means two authenticators hold the key (a clone): the passkey is flagged and
    refused from then on, and the event is audited."""
    if credential is None:
        return AssertionOutcome.REFUSED
    credential_id = _b64url_decode(credential.get("rawId") or credential.get("id"))
    challenge = _client_challenge(credential)
    if (
        credential_id is None
        or challenge is None
        or not challenge_is_ours(key_integrity_key, Ceremony.LOGIN, binding, challenge)
    ):
        return AssertionOutcome.REFUSED
    passkey = session.scalar(
        select(StaffPasskey).where(
            StaffPasskey.credential_id == credential_id, StaffPasskey.account_id == account.id
        )
    )
    if passkey is None or not usable(passkey, key_integrity_key):
        if passkey is not None and not is_authentic(key_integrity_key, passkey):
            logger.error("integrity alert: a stored passkey failed its row MAC")
        return AssertionOutcome.REFUSED
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp.id,
            expected_origin=rp.origin,
            credential_public_key=passkey.public_key,
            # The counter is compared below, after the signature: an unsigned response must not
            # be able to flag a member's passkey as cloned.
            credential_current_sign_count=0,
            require_user_verification=True,
        )
    except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError):
        return AssertionOutcome.REFUSED
    stored = passkey.sign_count
    if (verified.new_sign_count > 0 or stored > 0) and verified.new_sign_count <= stored:
        passkey.clone_suspected_at = utc_now()
        audit.record(
            session,
            account_actor(account),
            "auth.passkey_clone_suspected",
            object_type="account",
            object_id=account.id,
            outcome=audit.Outcome.DENIED,
            details={
                "passkey": str(passkey.id),
                "stored_count": stored,
                "seen_count": verified.new_sign_count,
            },
        )
        session.flush()
        return AssertionOutcome.CLONE_SUSPECTED
    # A conditional UPDATE: of two logins racing with the same counter value, one advances it.
    advanced = session.execute(
        update(StaffPasskey)
        .where(StaffPasskey.id == passkey.id, StaffPasskey.sign_count == stored)
        .values(sign_count=verified.new_sign_count, last_used_at=utc_now())
        .returning(StaffPasskey.id)
        .execution_options(synchronize_session=False)
    ).first()
    return AssertionOutcome.ACCEPTED if advanced is not None else AssertionOutcome.REFUSED
