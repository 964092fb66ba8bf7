"""Members' notice preferences and the organisation's channels, and the sealing of addresses.

Addresses and the webhook URL name staff: they are sealed under a key derived from the server's
integrity secret (kept beside the server, outside the database), so a database copy alone does
not list whom to target. The webhook's signing key is derived the same way from a random salt:
nothing stored in the database lets anyone sign a webhook call.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.crypto.binding import bind
from app.crypto.contracts import EnvelopeColumn
from app.crypto.errors import DecryptionError
from app.kit.clock import today, utc_now
from app.kit.errors import InvalidInput
from app.notify import channels
from app.notify.models import (
    MEMBER_ADDRESS,
    WEBHOOK_URL,
    DeliveryMode,
    NotificationDelivery,
    NotificationPreference,
    NotificationSettings,
)

ORGANISATION_ROW = 1
MAX_ADDRESS_CHARACTERS = 254
# One address, no display name, no list: what a member types for themselves.
ADDRESS_PATTERN = re.compile(
    r"^[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$"
)
DIGEST_HOURS = (1, 4, 12, 24, 168)


def _derived(integrity_key: bytes, purpose: str, salt: bytes = b"") -> bytes:
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=bind(purpose, salt)).derive(integrity_key)


def _address_key(integrity_key: bytes) -> bytes:
    return _derived(integrity_key, "daylight/notify-address-key/v1")


def seal_address(integrity_key: bytes, column: EnvelopeColumn, row: str, value: str) -> bytes:
    return column.seal(_address_key(integrity_key), value.encode(), row_id=row)


def open_address(integrity_key: bytes, column: EnvelopeColumn, row: str, sealed: bytes | None) -> str | None:
    """The address, or None when none is set or it does not open (moved rows, another server's)."""
    if sealed is None:
        return None
    try:
        return column.open(_address_key(integrity_key), sealed, row_id=row).decode()
    except DecryptionError:
        return None


def webhook_signing_key(integrity_key: bytes, salt: bytes) -> bytes:
    return _derived(integrity_key, "daylight/notify-webhook-signing/v1", salt)


@dataclass(frozen=True, slots=True)
class MemberPreferences:
    enabled: bool
    mode: DeliveryMode
    address: str | None
    openpgp_key: str | None
    openpgp_fingerprint: str | None


def member_preferences(session: Session, account_id: uuid.UUID, integrity_key: bytes) -> MemberPreferences:
    row = session.get(NotificationPreference, account_id)
    if row is None:
        return MemberPreferences(False, DeliveryMode.IMMEDIATE, None, None, None)
    return MemberPreferences(
        enabled=row.enabled,
        mode=DeliveryMode(row.mode),
        address=open_address(integrity_key, MEMBER_ADDRESS, str(account_id), row.address_encrypted),
        openpgp_key=row.openpgp_key,
        openpgp_fingerprint=row.openpgp_fingerprint,
    )


def check_address(address: str) -> str:
    address = address.strip()
    if len(address) > MAX_ADDRESS_CHARACTERS or not ADDRESS_PATTERN.fullmatch(address):
        raise InvalidInput(
            "Give one e-mail address, like name@example.org.",
            fields=[{"field": "address", "message": "not an e-mail address"}],
        )
    return address


def save_member_preferences(
    session: Session,
    actor: audit.Actor,
    account_id: uuid.UUID,
    *,
    enabled: bool,
    mode: DeliveryMode,
    address: str,
    openpgp_key: str,
    integrity_key: bytes,
) -> None:
    """Store a member's choice (an empty address turns mail off); audited without the address."""
    checked_address = check_address(address) if address.strip() else None
    fingerprint = None
    if openpgp_key.strip():
        try:
            fingerprint = channels.read_openpgp_key(openpgp_key)
        except ValueError as exc:
            raise InvalidInput(str(exc), fields=[{"field": "openpgp_key", "message": str(exc)}]) from None
    row = session.get(NotificationPreference, account_id)
    if row is None:
        row = NotificationPreference(account_id=account_id)
        session.add(row)
    row.enabled = enabled and checked_address is not None
    row.mode = mode.value
    row.address_encrypted = (
        seal_address(integrity_key, MEMBER_ADDRESS, str(account_id), checked_address)
        if checked_address
        else None
    )
    row.openpgp_key = openpgp_key.strip() if fingerprint else None
    row.openpgp_fingerprint = fingerprint
    row.changed_on = today()
    # Deliveries parked after the old address was refused are tried again with the new settings.
    session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.recipient_id == account_id, NotificationDelivery.parked.is_(True))
        .values(parked=False, attempts=0, next_attempt_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    session.flush()
    audit.record(
        session,
        actor,
        "notify.preferences",
        object_type="account",
        object_id=account_id,
        details={
            "enabled": row.enabled,
            "mode": mode.value,
            "address": checked_address is not None,
            "openpgp": fingerprint or "",
        },
    )


@dataclass(frozen=True, slots=True)
class OrganisationChannels:
    email_enabled: bool
    webhook_url: str | None
    webhook_signing_key: bytes | None
    digest_hours: int


def organisation_channels(session: Session, integrity_key: bytes) -> OrganisationChannels:
    row = session.get(NotificationSettings, ORGANISATION_ROW)
    if row is None:
        return OrganisationChannels(True, None, None, 24)
    url = open_address(integrity_key, WEBHOOK_URL, str(ORGANISATION_ROW), row.webhook_url_encrypted)
    key = webhook_signing_key(integrity_key, row.webhook_key_salt) if url and row.webhook_key_salt else None
    return OrganisationChannels(row.email_enabled, url if key else None, key, row.digest_hours)


def save_organisation_channels(
    session: Session,
    actor: audit.Actor,
    *,
    email_enabled: bool,
    webhook_url: str,
    digest_hours: int,
    new_signing_key: bool,
    integrity_key: bytes,
) -> None:
    if digest_hours not in DIGEST_HOURS:
        raise InvalidInput(
            "Choose one of the digest periods offered.",
            fields=[{"field": "digest_hours", "message": "not a period offered"}],
        )
    url = None
    if webhook_url.strip():
        try:
            url = channels.check_webhook_url(webhook_url.strip())
        except ValueError as exc:
            raise InvalidInput(str(exc), fields=[{"field": "webhook_url", "message": str(exc)}]) from None
    row = session.get(NotificationSettings, ORGANISATION_ROW)
    if row is None:
        row = NotificationSettings(id=ORGANISATION_ROW)
        session.add(row)
    row.email_enabled = email_enabled
    row.digest_hours = digest_hours
    row.webhook_url_encrypted = (
        seal_address(integrity_key, WEBHOOK_URL, str(ORGANISATION_ROW), url) if url else None
    )
    if url is None:
        row.webhook_key_salt = None
    elif new_signing_key or row.webhook_key_salt is None:
        row.webhook_key_salt = os.urandom(32)
    row.changed_on = today()
    session.flush()
    audit.record(
        session,
        actor,
        "notify.settings",
        object_type="organisation",
        details={
            "email": email_enabled,
            "webhook": url is not None,
            "digest_hours": digest_hours,
            "new_signing_key": bool(url) and new_signing_key,
        },
    )


def enabled_members(session: Session, account_ids: set[uuid.UUID]) -> dict[uuid.UUID, NotificationPreference]:
    """Of ``account_ids``, those with notices on and an address, with their preferences."""
    if not account_ids:
        return {}
    rows = session.scalars(
        select(NotificationPreference).where(
            NotificationPreference.account_id.in_(sorted(account_ids)),
            NotificationPreference.enabled.is_(True),
            NotificationPreference.address_encrypted.is_not(None),
        )
    )
    return {row.account_id: row for row in rows}


def preference_address(row: NotificationPreference, integrity_key: bytes) -> str | None:
    return open_address(integrity_key, MEMBER_ADDRESS, str(row.account_id), row.address_encrypted)
