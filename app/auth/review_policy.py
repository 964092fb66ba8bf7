"""The organisation's review policy: who may be the second person of the two-person rule.

A report's verification and a case's link to a station are proposed by one member and
confirmed by another (app.triage.workflow, app.cases.station_links). By default the second
person is a lead other than the proposer. An organisation with a single lead would then never
verify what that lead proposes, so an admin may widen it to any member holding the intake key
other than the proposer: still two people who can read the report, never one.

The policy lives in the audit log, as the login policy does (app.auth.login_policy): the
newest ``organisation.review_policy`` event is the policy in force. A database writer cannot
quietly let caseworkers confirm with one UPDATE; removing or rewriting that event breaks the
signed, witnessed log (app.audit_log).

``may_confirm`` is the one rule: the services refuse what it refuses, and the pages offer a
confirm button only where it allows one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth.models import Role, StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES, Permission
from app.auth.principal import Principal
from app.kit.errors import Forbidden

POLICY_EVENT = "organisation.review_policy"
POLICY_PATH = "/admin/review-policy"


class SecondPerson(StrEnum):
    """Who may confirm what another member proposed."""

    LEAD = "lead"  # a lead other than the proposer
    KEY_HOLDER = "key_holder"  # any member holding the intake key, other than the proposer


@dataclass(frozen=True, slots=True)
class ReviewPolicy:
    second_person: SecondPerson = SecondPerson.LEAD

    @property
    def second_person_noun(self) -> str:
        """How the pages name the member who may confirm: "lead" or "key holder"."""
        return "key holder" if self.second_person is SecondPerson.KEY_HOLDER else "lead"


def current_review_policy(session: Session) -> ReviewPolicy:
    details = session.scalar(
        select(AuditEvent.details)
        .where(AuditEvent.action == POLICY_EVENT, AuditEvent.outcome == audit.Outcome.SUCCESS.value)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    if details is None:
        return ReviewPolicy()
    recorded = json.loads(details).get("second_person")
    # Anything but the one wider value recorded reads as the strict default.
    if recorded == SecondPerson.KEY_HOLDER.value:
        return ReviewPolicy(SecondPerson.KEY_HOLDER)
    return ReviewPolicy()


def set_review_policy(session: Session, policy: ReviewPolicy, *, actor: audit.Actor) -> None:
    audit.record(
        session,
        actor,
        POLICY_EVENT,
        object_type="organisation",
        details={"second_person": policy.second_person.value},
    )
    session.flush()


def may_be_second_person(policy: ReviewPolicy, principal: Principal) -> bool:
    """Whether the caller's role and keys let them confirm anything at all under the policy
    (the proposer aside): a lead; or, under ``key_holder``, a triaging member whose login
    unlocked an intake key."""
    if principal.can(Permission.LEAD_TRIAGE):
        return True
    return (
        policy.second_person is SecondPerson.KEY_HOLDER
        and principal.role in KEY_HOLDING_ROLES
        and principal.can(Permission.TRIAGE_TIPS)
        and bool(principal.keys.intake)
    )


def may_confirm(policy: ReviewPolicy, principal: Principal, proposer_id: uuid.UUID | None) -> bool:
    """Whether the caller may confirm a proposal made by ``proposer_id`` (None: a former member,
    whose account is gone): never the proposer, and only a second person the policy allows."""
    return proposer_id != principal.account_id and may_be_second_person(policy, principal)


def second_person_policy(session: Session, principal: Principal, confirming: str) -> ReviewPolicy:
    """The policy in force, once the caller is someone it lets confirm at all (403 otherwise,
    naming who may confirm ``confirming``: "a verification", "a link to a station")."""
    policy = current_review_policy(session)
    if not may_be_second_person(policy, principal):
        who = (
            "a member who holds the intake key"
            if policy.second_person is SecondPerson.KEY_HOLDER
            else "a lead"
        )
        raise Forbidden(f"Only {who} confirms {confirming}.")
    return policy


def single_lead_warning(session: Session, policy: ReviewPolicy) -> str | None:
    """A warning for the pages while, under the ``lead`` policy, what the only lead proposes can
    never be confirmed (or, with no lead at all, nothing can); None otherwise. Leads counted are
    active and have activated their account."""
    if policy.second_person is not SecondPerson.LEAD:
        return None
    leads = list(
        session.scalars(
            select(StaffAccount.username)
            .where(
                StaffAccount.role == Role.LEAD,
                StaffAccount.is_active.is_(True),
                StaffAccount.login_verifier.is_not(None),
            )
            .order_by(StaffAccount.username)
            .limit(2)
        )
    )
    remedy = (
        "Invite a second lead, or ask an admin to let any key holder other than the proposer "
        f"confirm ({POLICY_PATH})."
    )
    if not leads:
        return (
            "This organisation has no active lead: no verification or station link can be "
            f"confirmed. {remedy}"
        )
    if len(leads) > 1:
        return None
    return (
        f"This organisation has one lead ({leads[0]}): verifications and station links that "
        f"{leads[0]} proposes cannot be confirmed, because a different lead must confirm them. {remedy}"
    )
