"""A tip's lifecycle: claim, assign, question, verify (two people), reject, notes.

    new → in_review → needs_info ↔ in_review → verified | rejected

Every rule is enforced here, not in the routes: a caseworker acts only on a
tip assigned to them, a lead on any; verification proposed by one member is
confirmed by a second person the organisation's review policy allows
(app.auth.review_policy: a different lead, or any other key holder). Each
change writes a TipEvent (actor, day) and an audit event in the same
transaction. Illegal moves are a 409 that says why.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.auth.review_policy import may_confirm, second_person_policy
from app.cases.repository import tip_readable_by
from app.intake import service as intake_service
from app.intake.duress import duress_flagged_on
from app.intake.models import MessageAuthor, RejectionReason, Tip, TipStatus
from app.keys.eligibility import content_reader
from app.kit.clock import today
from app.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.kit.sequencing import next_position
from app.kit.server_secrets import ServerSecrets
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from app.triage.models import NOTE_BODY, TipEvent, TipNote, note_row_id

OPEN_STATUSES = frozenset({TipStatus.NEW, TipStatus.IN_REVIEW, TipStatus.NEEDS_INFO})
NOTE_MAX_CHARS = 20_000


class IllegalTransition(Conflict):
    code = "illegal_transition"


class AssignedElsewhere(Conflict):
    code = "assigned_elsewhere"
    public_message = "This report is assigned to another member; a lead can reassign it."


class RepliesStoppedUnderDuress(Conflict):
    code = "submitter_under_duress"
    public_message = (
        "A duress code of this report was used: its submitter may be under duress, and whoever "
        "holds the receipt may not be them. Replies are stopped."
    )


class SameMemberConfirms(Conflict):
    code = "two_person_rule"
    public_message = "Verification must be confirmed by a different member than the one who proposed it."


def load_for_update(session: Session, principal: Principal, tip_id: uuid.UUID) -> Tip:
    """The tip, if the caller may read it (404 otherwise), locked for the rest of the transaction
    on PostgreSQL (SQLite's write lock already serialises the transaction)."""
    tip = session.scalars(tip_readable_by(principal, tip_id).with_for_update()).first()
    if tip is None:
        raise NotFound
    return tip


def _require_hands_on(principal: Principal, tip: Tip) -> None:
    """A lead acts on any tip; a caseworker on tips assigned to them."""
    if principal.can(Permission.LEAD_TRIAGE):
        return
    if tip.assignee_id != principal.account_id:
        if tip.assignee_id is None:
            raise IllegalTransition("Claim this report before working on it.")
        raise AssignedElsewhere


def _require_status(tip: Tip, allowed: frozenset[TipStatus], doing: str) -> None:
    if tip.status not in allowed:
        raise IllegalTransition(f"A report that is {tip.status.value.replace('_', ' ')} cannot be {doing}.")


def record_step(
    session: Session,
    principal: Principal,
    tip: Tip,
    action: str,
    *,
    from_status: TipStatus | None = None,
    detail: str | None = None,
) -> None:
    """The tip's history row and the audit event, in the caller's transaction."""
    position = next_position(session, TipEvent.position, TipEvent.tip_id == tip.id)
    session.add(
        TipEvent(
            tip_id=tip.id,
            position=position,
            action=action,
            from_status=from_status.value if from_status else None,
            to_status=tip.status.value if from_status and from_status is not tip.status else None,
            actor_id=principal.account_id,
            detail=detail,
            happened_on=today(),
        )
    )
    details: dict[str, audit.DetailValue] = {"status": tip.status.value}
    if from_status is not None and from_status is not tip.status:
        details["from"] = from_status.value
    if detail is not None:
        details["detail"] = detail
    audit.record(
        session, principal.actor, f"tip.{action}", object_type="tip", object_id=tip.id, details=details
    )


def _move(tip: Tip, status: TipStatus) -> TipStatus:
    previous = tip.status
    tip.status = status
    tip.last_activity_on = today()
    return previous


def claim(session: Session, principal: Principal, tip_id: uuid.UUID) -> Tip:
    tip = load_for_update(session, principal, tip_id)
    _require_status(tip, OPEN_STATUSES, "claimed")
    if tip.assignee_id not in (None, principal.account_id):
        raise AssignedElsewhere
    tip.assignee_id = principal.account_id
    previous = _move(tip, TipStatus.IN_REVIEW) if tip.status is TipStatus.NEW else tip.status
    record_step(session, principal, tip, "claim", from_status=previous)
    return tip


def release(session: Session, principal: Principal, tip_id: uuid.UUID) -> Tip:
    tip = load_for_update(session, principal, tip_id)
    _require_hands_on(principal, tip)
    if tip.assignee_id is None:
        raise IllegalTransition("This report is not assigned to anyone.")
    tip.assignee_id = None
    record_step(session, principal, tip, "release", from_status=tip.status)
    return tip


def assign(session: Session, principal: Principal, tip_id: uuid.UUID, assignee_id: uuid.UUID) -> Tip:
    """A lead gives the tip to a member who can read it (a key holder of its key version)."""
    if not principal.can(Permission.LEAD_TRIAGE):
        raise Forbidden("Only a lead assigns reports.")
    tip = load_for_update(session, principal, tip_id)
    _require_status(tip, OPEN_STATUSES, "assigned")
    assignee = content_reader(session, assignee_id, tip.intake_key_version)
    if assignee is None:
        raise InvalidInput(
            "Assign reports only to an active caseworker or lead who holds the intake key.",
            fields=[{"field": "assignee_id", "message": "not a member who can read this report"}],
        )
    tip.assignee_id = assignee.id
    previous = _move(tip, TipStatus.IN_REVIEW) if tip.status is TipStatus.NEW else tip.status
    record_step(session, principal, tip, "assign", from_status=previous, detail=assignee.username)
    if assignee.id != principal.account_id:
        outbox.notify(session, NoticeKind.ASSIGNED, Audience.MEMBER, audience_id=assignee.id)
    return tip


def send_message(
    session: Session,
    principal: Principal,
    tip_id: uuid.UUID,
    body: str,
    *,
    question: bool,
    server_secrets: ServerSecrets,
) -> Tip:
    """A reply, or a question that waits for the submitter (needs_info). Sealed to the
    receipt-derived key, so only the receipt holder reads it."""
    tip = load_for_update(session, principal, tip_id)
    _require_hands_on(principal, tip)
    _require_status(tip, frozenset({TipStatus.IN_REVIEW, TipStatus.NEEDS_INFO}), "asked or answered")
    if duress_flagged_on(session, tip.id) is not None:
        # Whoever typed the receipt may be the one applying the pressure: a reply would reach them.
        raise RepliesStoppedUnderDuress
    intake_service.add_message(
        session,
        tip,
        body,
        author=MessageAuthor.STAFF,
        server_secrets=server_secrets,
        author_account_id=principal.account_id,
    )
    previous = tip.status
    if question:
        _move(tip, TipStatus.NEEDS_INFO)
        # Whatever was proposed rested on what was known; the answer may change it.
        tip.verification_proposed_by_id = None
    record_step(session, principal, tip, "question" if question else "reply", from_status=previous)
    return tip


def propose_verification(session: Session, principal: Principal, tip_id: uuid.UUID) -> Tip:
    tip = load_for_update(session, principal, tip_id)
    _require_hands_on(principal, tip)
    _require_status(tip, frozenset({TipStatus.IN_REVIEW}), "proposed for verification")
    if tip.verification_proposed_by_id is not None:
        raise IllegalTransition("Verification of this report is already proposed and awaits confirmation.")
    tip.verification_proposed_by_id = principal.account_id
    record_step(session, principal, tip, "verify_propose", from_status=tip.status)
    outbox.notify(
        session,
        NoticeKind.VERIFICATION_WAITING,
        Audience.CONFIRMERS,
        # No case: only verified reports join one, so a proposal is never inside a restricted case.
        excluded_id=principal.account_id,
    )
    return tip


def confirm_verification(session: Session, principal: Principal, tip_id: uuid.UUID) -> Tip:
    """The second person of the two-person rule: a member other than the proposer whom the
    review policy allows (a lead; or, under ``key_holder``, any key holder)."""
    tip = load_for_update(session, principal, tip_id)
    policy = second_person_policy(session, principal, "a verification")
    _require_status(tip, frozenset({TipStatus.IN_REVIEW}), "verified")
    if tip.verification_proposed_by_id is None:
        raise IllegalTransition("Nobody has proposed this report for verification yet.")
    if not may_confirm(policy, principal, tip.verification_proposed_by_id):
        raise SameMemberConfirms
    previous = _move(tip, TipStatus.VERIFIED)
    record_step(session, principal, tip, "verify_confirm", from_status=previous)
    return tip


def reject(
    session: Session,
    principal: Principal,
    tip_id: uuid.UUID,
    reason: RejectionReason,
    duplicate_of: uuid.UUID | None = None,
) -> Tip:
    tip = load_for_update(session, principal, tip_id)
    _require_hands_on(principal, tip)
    _require_status(tip, OPEN_STATUSES, "rejected")
    if (reason is RejectionReason.DUPLICATE) != (duplicate_of is not None):
        raise InvalidInput(
            "A duplicate names the report it duplicates, and only a duplicate does.",
            fields=[{"field": "duplicate_of", "message": "required exactly for a duplicate"}],
        )
    if duplicate_of is not None:
        original = session.scalars(tip_readable_by(principal, duplicate_of)).first()
        if original is None or original.id == tip.id:
            raise InvalidInput(
                "The report it duplicates was not found.",
                fields=[{"field": "duplicate_of", "message": "not a report you can read"}],
            )
        tip.duplicate_of_id = original.id
    tip.rejection_reason = reason
    tip.verification_proposed_by_id = None
    previous = _move(tip, TipStatus.REJECTED)
    record_step(session, principal, tip, "reject", from_status=previous, detail=reason.value)
    return tip


def add_note(
    session: Session, principal: Principal, tip_id: uuid.UUID, body: str, data_key: bytes
) -> TipNote:
    """A staff-only note, under the tip's data key (the caller has opened the tip). Like every
    other step, on a tip one works on: one's own, or any for a lead."""
    tip = load_for_update(session, principal, tip_id)
    _require_hands_on(principal, tip)
    note_id = uuid.uuid4()
    note = TipNote(
        id=note_id,
        tip_id=tip.id,
        author_id=principal.account_id,
        written_on=today(),
        body_encrypted=NOTE_BODY.seal(
            data_key, body.encode(), row_id=note_row_id(tip.id, note_id), key_version=tip.content_key_version
        ),
    )
    session.add(note)
    tip.search_indexed = False  # its words enter the search index at the next key holder's queue
    record_step(session, principal, tip, "note")
    session.flush()
    return note
