"""The registry of organisations referrals go to: added by a lead, confirmed by another.

Threats: a database writer who swaps a recipient's public key for their own would receive the
next referral; a lead tricked into pasting an impostor's key would send one to the impostor. So
the key is stored with a MAC under the key-integrity key (checked before every seal), and a key
is used only after a second lead has compared its fingerprint with the recipient by another
channel (a call, a meeting) and confirmed it here. A state that steals the database learns which
organisations, police forces and journalists this one works with only if it can open content:
names and contacts are sealed like a case's title.
"""

from __future__ import annotations

import hmac
import json
import logging
import unicodedata
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.accounts import usernames
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.crypto import sealing
from app.crypto.integrity import UntrustedPublicKey, public_key_mac, row_mac, trusted_public_key
from app.custody.service import current_intake_key, trusted_intake_public_key
from app.kit.clock import today
from app.kit.errors import Conflict, Forbidden, IntegrityFailure, InvalidInput, NotFound
from app.kit.server_secrets import ServerSecrets
from app.referrals import keys
from app.referrals.keys import RecipientKeyError, parse_public_key
from app.referrals.models import RECIPIENT_RECORD, RecipientKind, ReferralRecipient
from app.web.visible_text import is_deceptive

RECIPIENT_RECORD_NAME = "referral_recipient/v1"
NAME_MAX_CHARS = 200

logger = logging.getLogger("daylight.referrals")
CONTACT_MAX_CHARS = 500


class SameLeadConfirms(Conflict):
    code = "two_person_rule"
    public_message = "A recipient's key must be confirmed by a different lead than the one who added it."


class DuplicateRecipientKey(Conflict):
    code = "duplicate_recipient_key"
    public_message = "A recipient with this key is already in the registry."


@dataclass(frozen=True, slots=True)
class RecipientView:
    id: uuid.UUID
    name: str
    contact: str
    kind: RecipientKind
    fingerprint: str
    added_by: str | None
    added_on: str
    confirmed_by: str | None
    confirmed: bool
    retired: bool


def require_lead(principal: Principal, doing: str) -> None:
    if not principal.can(Permission.LEAD_TRIAGE):
        raise Forbidden(f"Only a lead {doing}.")


def _clean_text(value: str, field: str, limit: int, *, required: bool) -> str:
    cleaned = unicodedata.normalize("NFC", value).strip()
    if (required and not cleaned) or len(cleaned) > limit:
        raise InvalidInput(
            f"The {field} is {'1' if required else '0'} to {limit} characters.",
            fields=[{"field": field, "message": f"up to {limit} characters"}],
        )
    if any(unicodedata.category(char) == "Cc" or is_deceptive(char) for char in cleaned):
        raise InvalidInput(
            f"The {field} cannot hold control or invisible characters.",
            fields=[{"field": field, "message": "no control or invisible characters"}],
        )
    return cleaned


def _key_context(recipient_id: uuid.UUID) -> tuple[str, str]:
    return ("referral_recipients", str(recipient_id))


def recipient_row_mac(integrity_key: bytes, recipient: ReferralRecipient) -> bytes:
    """The MAC a recipient row must carry (app.crypto.integrity.row_mac)."""
    return row_mac(
        integrity_key,
        RECIPIENT_RECORD_NAME,
        str(recipient.id),
        RecipientKind(recipient.kind).value,
        recipient.fingerprint,
        None if recipient.confirmed_by_id is None else str(recipient.confirmed_by_id),
        "retired" if recipient.retired_on is not None else "current",
    )


def _require_authentic(recipient: ReferralRecipient, integrity_key: bytes) -> None:
    """IntegrityFailure unless the server wrote this row's kind, key, confirmation and retirement."""
    if not hmac.compare_digest(recipient_row_mac(integrity_key, recipient), recipient.row_mac or b""):
        logger.error("a referral recipient failed its integrity check: integrity alert")
        raise IntegrityFailure


def add_recipient(
    session: Session,
    principal: Principal,
    *,
    name: str,
    contact: str,
    kind: RecipientKind,
    public_key_text: str,
    server_secrets: ServerSecrets,
) -> ReferralRecipient:
    """A recipient, not usable until another lead confirms its fingerprint."""
    require_lead(principal, "adds a recipient")
    cleaned_name = _clean_text(name, "name", NAME_MAX_CHARS, required=True)
    cleaned_contact = _clean_text(contact, "contact", CONTACT_MAX_CHARS, required=False)
    try:
        key = parse_public_key(public_key_text.strip())
    except RecipientKeyError as exc:
        raise InvalidInput(
            f"That is not a recipient's public key: {exc}",
            fields=[{"field": "public_key", "message": "paste the line `daylight referral keygen` wrote"}],
        ) from None
    duplicate = session.scalar(
        select(ReferralRecipient.id).where(
            ReferralRecipient.fingerprint == key.fingerprint, ReferralRecipient.retired_on.is_(None)
        )
    )
    if duplicate is not None:
        raise DuplicateRecipientKey
    intake_key = current_intake_key(session)
    if intake_key is None or intake_key.version not in principal.keys.intake:
        raise Forbidden(
            "Adding a recipient needs the current intake key: ask a lead to grant it, then log in."
        )
    intake_public = trusted_intake_public_key(intake_key, server_secrets.key_integrity_key)
    recipient_id, version = uuid.uuid4(), intake_key.version
    details = json.dumps({"name": cleaned_name, "contact": cleaned_contact}).encode()
    sealed_key, sealed_details = RECIPIENT_RECORD.seal(intake_public, version, str(recipient_id), details)
    recipient = ReferralRecipient(
        id=recipient_id,
        kind=kind,
        public_key=key.public_key.raw,
        public_key_mac=public_key_mac(
            server_secrets.key_integrity_key, key.public_key, *_key_context(recipient_id)
        ),
        fingerprint=key.fingerprint,
        added_by_id=principal.account_id,
        added_on=today(),
        intake_key_version=version,
        content_key_version=version,
        sealed_data_key=sealed_key,
        details_encrypted=sealed_details,
    )
    recipient.row_mac = recipient_row_mac(server_secrets.key_integrity_key, recipient)
    session.add(recipient)
    session.flush()
    # The fingerprint and kind, never the name or contact: auditors hold no key.
    audit.record(
        session,
        principal.actor,
        "referral_recipient.add",
        object_type="referral_recipient",
        object_id=recipient.id,
        details={"fingerprint": key.fingerprint, "kind": kind.value},
    )
    return recipient


def _recipient_for_update(session: Session, recipient_id: uuid.UUID) -> ReferralRecipient:
    recipient = session.scalars(
        select(ReferralRecipient).where(ReferralRecipient.id == recipient_id).with_for_update()
    ).first()
    if recipient is None:
        raise NotFound
    return recipient


def confirm_recipient(
    session: Session, principal: Principal, recipient_id: uuid.UUID, *, fingerprint: str, integrity_key: bytes
) -> ReferralRecipient:
    """A second lead confirms the fingerprint they compared with the recipient. The fingerprint
    they typed or pasted must be the stored key's: confirming without comparing is not possible."""
    require_lead(principal, "confirms a recipient")
    recipient = _recipient_for_update(session, recipient_id)
    _require_authentic(recipient, integrity_key)
    if recipient.retired_on is not None:
        raise Conflict("This recipient is retired.")
    if recipient.confirmed_by_id is not None:
        raise Conflict("This recipient is already confirmed.")
    if recipient.added_by_id == principal.account_id:
        raise SameLeadConfirms
    # Against the fingerprint of the key the server stored (its MAC checked), not the column.
    stored = keys.fingerprint(recipient_public_key(recipient, integrity_key))
    if "".join(fingerprint.split()).upper() != "".join(stored.split()).upper():
        raise InvalidInput(
            "The fingerprint does not match this recipient's key. Compare it with the recipient again.",
            fields=[{"field": "fingerprint", "message": "does not match"}],
        )
    recipient.confirmed_by_id = principal.account_id
    recipient.confirmed_on = today()
    recipient.row_mac = recipient_row_mac(integrity_key, recipient)
    session.flush()
    audit.record(
        session,
        principal.actor,
        "referral_recipient.confirm",
        object_type="referral_recipient",
        object_id=recipient.id,
        details={"fingerprint": recipient.fingerprint},
    )
    return recipient


def retire_recipient(
    session: Session, principal: Principal, recipient_id: uuid.UUID, *, integrity_key: bytes
) -> None:
    """Offered no more, and nothing more sealed to it; referrals already made keep naming it."""
    require_lead(principal, "retires a recipient")
    recipient = _recipient_for_update(session, recipient_id)
    if recipient.retired_on is not None:
        raise Conflict("This recipient is already retired.")
    _require_authentic(recipient, integrity_key)
    recipient.retired_on = today()
    recipient.row_mac = recipient_row_mac(integrity_key, recipient)
    session.flush()
    audit.record(
        session,
        principal.actor,
        "referral_recipient.retire",
        object_type="referral_recipient",
        object_id=recipient.id,
    )


def recipient_public_key(recipient: ReferralRecipient, integrity_key: bytes) -> sealing.PublicKey:
    """The key to seal to, once its MAC proves the server stored it for this recipient."""
    try:
        return trusted_public_key(
            integrity_key, recipient.public_key, recipient.public_key_mac, *_key_context(recipient.id)
        )
    except UntrustedPublicKey:
        raise IntegrityFailure from None


def recipient_details(principal: Principal, recipient: ReferralRecipient) -> dict[str, str]:
    intake_private = principal.intake_private_key(recipient.intake_key_version)
    if intake_private is None:
        raise NotFound
    opened: dict[str, str] = json.loads(
        RECIPIENT_RECORD.open(
            intake_private,
            recipient.sealed_data_key,
            recipient.details_encrypted,
            row_id=str(recipient.id),
            intake_version=recipient.intake_key_version,
            content_version=recipient.content_key_version,
        )
    )
    return opened


def recipient_views(
    session: Session, principal: Principal, *, usable_only: bool = False
) -> list[RecipientView]:
    """The registry as the caller can read it (recipients sealed to keys they hold)."""
    rows = list(session.scalars(select(ReferralRecipient).order_by(ReferralRecipient.added_on)))
    # Whom the organisation works with is sealed content: reading it is on the record.
    audit.record(session, principal.actor, "referral_recipients.list")
    names = usernames(session, [row.added_by_id for row in rows] + [row.confirmed_by_id for row in rows])
    views = []
    for row in rows:
        if principal.intake_private_key(row.intake_key_version) is None:
            continue
        if usable_only and (row.confirmed_by_id is None or row.retired_on is not None):
            continue
        details = recipient_details(principal, row)
        views.append(
            RecipientView(
                id=row.id,
                name=details["name"],
                contact=details["contact"],
                kind=row.kind,
                fingerprint=row.fingerprint,
                added_by=names.get(row.added_by_id) if row.added_by_id else None,
                added_on=row.added_on.isoformat(),
                confirmed_by=names.get(row.confirmed_by_id) if row.confirmed_by_id else None,
                confirmed=row.confirmed_by_id is not None,
                retired=row.retired_on is not None,
            )
        )
    return sorted(views, key=lambda view: view.name.casefold())


def usable_recipient(session: Session, recipient_id: uuid.UUID, integrity_key: bytes) -> ReferralRecipient:
    """A confirmed, current recipient whose row the server wrote (a referral is sealed to it), or
    InvalidInput; IntegrityFailure for a row a database writer changed."""
    recipient = session.get(ReferralRecipient, recipient_id)
    if recipient is not None:
        _require_authentic(recipient, integrity_key)
    if recipient is None or recipient.confirmed_by_id is None or recipient.retired_on is not None:
        raise InvalidInput(
            "Choose recipients from the registry whose key a second lead has confirmed.",
            fields=[{"field": "recipients", "message": "not a confirmed recipient"}],
        )
    return recipient
