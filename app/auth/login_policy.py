"""The organisation's second-factor policy: whether passkeys are mandatory, and whether TOTP
remains a fallback for members who have none.

The policy lives in the audit log, not in a table of its own: the newest ``auth.login_policy``
event is the policy in force. Someone who can write the database could otherwise switch
passkeys off with one UPDATE and let a relayed TOTP code in again; removing or rewriting that
event breaks the signed, witnessed log instead (app.audit_log), the same way member key epochs
are kept (app.custody.service).

With passkeys mandatory, a member who has a usable passkey must use it: a phishing kit cannot
fall back to asking for their TOTP code. A member without one may still log in with TOTP (to
enrol a passkey) only while the admin leaves the fallback on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent

POLICY_EVENT = "auth.login_policy"


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    passkeys_required: bool = False
    totp_fallback: bool = True

    def accepts_totp(self, *, has_usable_passkey: bool) -> bool:
        """Whether a TOTP code may be the second factor of this member's login."""
        if not self.passkeys_required:
            return True
        return self.totp_fallback and not has_usable_passkey


def current_policy(session: Session) -> LoginPolicy:
    details = session.scalar(
        select(AuditEvent.details)
        .where(AuditEvent.action == POLICY_EVENT, AuditEvent.outcome == audit.Outcome.SUCCESS.value)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    if details is None:
        return LoginPolicy()
    recorded = json.loads(details)
    return LoginPolicy(
        passkeys_required=recorded.get("passkeys_required") is True,
        totp_fallback=recorded.get("totp_fallback") is not False,
    )


def set_policy(session: Session, policy: LoginPolicy, *, actor: audit.Actor) -> None:
    audit.record(
        session,
        actor,
        POLICY_EVENT,
        object_type="organisation",
        details={"passkeys_required": policy.passkeys_required, "totp_fallback": policy.totp_fallback},
    )
    session.flush()
