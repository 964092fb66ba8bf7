"""A lead's confirmation that a member's key pair is the member's own.

An admin issues activation and password-reset links, and could open one themselves: choose the
password and the second factor, and so hold the key pair a lead would seal the intake key to.
Completing such a link therefore leaves the account unconfirmed (`accounts.complete_link`), and
no key grant is offered to it or made (app.keys) until a lead has compared the new key's
fingerprint with the member: the member reads it out from their own account page (computed from
the key their login unlocked), the lead types it, and it must be the fingerprint of the stored,
MAC-checked public key. A member whose link someone else used finds the link used up and cannot
log in, so has nothing to read out; a mismatch is recorded as a failed `account.confirm`.

The operator confirms the first lead of an organisation, when there is no lead yet to do it:
`daylight accounts confirm USERNAME --fingerprint CODE`, recorded with the system actor.
"""

from __future__ import annotations

import hmac
import uuid

from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.auth.password_keys import key_fingerprint
from app.custody.service import trusted_member_public_key
from app.kit.clock import utc_now
from app.kit.errors import AppError, Conflict, Forbidden, NotFound

CONFIRM_EVENT = "account.confirm"
# Far longer than any fingerprint typed with spaces or dashes; longer input is cut, not read.
MAX_TYPED_FINGERPRINT = 128
# Left out when comparing: what people type between the groups (spaces, hyphens and the dashes
# a phone's keyboard makes of them).
_SEPARATORS = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2212")


class NotConfirmed(Conflict):
    code = "not_confirmed"
    public_message = "The member has not been confirmed by a lead yet: compare their key fingerprint first."


class FingerprintMismatch(AppError):
    status = 422
    code = "fingerprint_mismatch"
    public_message = (
        "That code does not match the member's key. Ask them to read it again from their account page; "
        "if it still differs, their activation may have been completed by someone else — issue a new link."
    )


class OwnConfirmation(Forbidden):
    code = "own_confirmation"
    public_message = "You cannot confirm your own key: another lead compares it with you."


class NotActivated(Conflict):
    code = "not_activated"
    public_message = "The member has not activated their account yet: there is no key to confirm."


def is_confirmed(account: StaffAccount) -> bool:
    """Whether a lead (or the operator) confirmed the account's current key pair."""
    return account.confirmed_at is not None


def normalised_fingerprint(typed: str) -> str:
    """``typed`` without case, whitespace or dashes: "3F2A-9C01 ..." and "3f2a9c01..." are one."""
    return "".join(
        ch for ch in typed[:MAX_TYPED_FINGERPRINT].lower() if not ch.isspace() and ch not in _SEPARATORS
    )


def account_to_confirm(session: Session, account_id: uuid.UUID) -> StaffAccount:
    account = session.get(StaffAccount, account_id)
    if account is None:
        raise NotFound
    return account


def confirm_account(
    session: Session, account: StaffAccount, fingerprint: str, *, actor: audit.Actor, key_integrity_key: bytes
) -> bool:
    """Confirm the account's key pair if ``fingerprint`` (as the member read it out) is its key's.

    True when confirmed (an account confirmed already stays as it was). False when the
    fingerprint differs: a failed ``account.confirm`` event is recorded and nothing else
    changes; the caller must let that event commit (answer, do not raise). Raises, before
    anything is recorded, for one's own account and for an account with no key pair yet.
    """
    if actor.id is not None and actor.id == account.id:
        raise OwnConfirmation
    if account.public_key is None or account.public_key_mac is None:
        raise NotActivated
    # The stored key, once its MAC holds for the member's newest key epoch: the fingerprint the
    # lead confirms is that of the very key a grant will be sealed to.
    public_key = trusted_member_public_key(
        session,
        key_integrity_key,
        account_id=account.id,
        raw_public_key=account.public_key,
        mac=account.public_key_mac,
    )
    expected = key_fingerprint(public_key.raw)
    if not hmac.compare_digest(
        normalised_fingerprint(fingerprint).encode(), normalised_fingerprint(expected).encode()
    ):
        audit.record(
            session,
            actor,
            CONFIRM_EVENT,
            object_type="account",
            object_id=account.id,
            outcome=audit.Outcome.FAILURE,
            details={"reason": "fingerprint_mismatch"},
        )
        session.flush()
        return False
    if account.confirmed_at is None:
        account.confirmed_at = utc_now()
        account.confirmed_by_id = actor.id
        audit.record(
            session,
            actor,
            CONFIRM_EVENT,
            object_type="account",
            object_id=account.id,
            details={"fingerprint": expected},
        )
        session.flush()
    return True
