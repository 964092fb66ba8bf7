"""Working with cases: creation from verified tips, members, status, notes, restriction.

Content (title, summary, notes, resolution) is sealed under the case's own data
key, itself sealed to the current intake key; only key holders open it. Every
change is audited and written to the case's timeline, in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.cases.models import (
    CASE_DATA_KEY,
    CASE_NOTE_BODY,
    CASE_RESOLUTION,
    CASE_SUMMARY,
    CASE_TITLE,
    Case,
    CaseEvent,
    CaseMember,
    CaseNote,
    CaseStatus,
    CaseTactic,
    CaseTip,
    case_note_row_id,
)
from app.cases.repository import case_readable_by, tips_readable_by
from app.cases.schemas import (
    CaseCreate,
)
from app.crypto import envelope, human_codes
from app.custody.service import current_intake_key, trusted_intake_public_key
from app.intake.models import Tip, TipStatus
from app.keys.eligibility import content_reader
from app.kit.clock import today
from app.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from app.kit.sequencing import next_position
from app.kit.server_secrets import ServerSecrets
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind

CASE_REF_BITS = 40
# Forward only; closing is possible from any open state, with a resolution note.
NEXT_STATUSES: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.OPEN: frozenset({CaseStatus.INVESTIGATING, CaseStatus.CLOSED}),
    CaseStatus.INVESTIGATING: frozenset({CaseStatus.REFERRED, CaseStatus.CLOSED}),
    CaseStatus.REFERRED: frozenset({CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset(),
}


class IllegalCaseTransition(Conflict):
    code = "illegal_transition"


def _verified_tips(session: Session, principal: Principal, tip_ids: Sequence[uuid.UUID]) -> list[Tip]:
    tips = list(session.scalars(tips_readable_by(principal).where(Tip.id.in_(list(tip_ids)))))
    if len(tips) != len(set(tip_ids)):
        raise InvalidInput(
            "A report to add was not found.",
            fields=[{"field": "tip_ids", "message": "not a report you can read"}],
        )
    if any(tip.status is not TipStatus.VERIFIED for tip in tips):
        raise InvalidInput(
            "Only verified reports go into a case.", fields=[{"field": "tip_ids", "message": "not verified"}]
        )
    return tips


def _record(
    session: Session, principal: Principal, case: Case, action: str, detail: str | None = None
) -> None:
    position = next_position(session, CaseEvent.position, CaseEvent.case_id == case.id)
    session.add(
        CaseEvent(
            case_id=case.id,
            position=position,
            action=action,
            actor_id=principal.account_id,
            detail=detail,
            happened_on=today(),
        )
    )
    details: dict[str, audit.DetailValue] = {"status": case.status.value}
    if detail is not None:
        details["detail"] = detail
    audit.record(
        session, principal.actor, f"case.{action}", object_type="case", object_id=case.id, details=details
    )
    # The case's other members hear that it changed; what changed they read in the app.
    outbox.notify(
        session,
        NoticeKind.CASE_CHANGED,
        Audience.CASE_MEMBERS,
        audience_id=case.id,
        excluded_id=principal.account_id,
    )


def create_case(
    session: Session, principal: Principal, request: CaseCreate, server_secrets: ServerSecrets
) -> Case:
    tips = _verified_tips(session, principal, request.tip_ids)
    intake_key = current_intake_key(session)
    if intake_key is None or intake_key.version not in principal.keys.intake:
        raise NotFound
    case = open_case(session, tips, request, server_secrets, creator_id=principal.account_id)
    _record(session, principal, case, "create", detail=f"{len(tips)} reports")
    session.flush()
    return case


def open_case(
    session: Session,
    tips: Sequence[Tip],
    request: CaseCreate,
    server_secrets: ServerSecrets,
    *,
    creator_id: uuid.UUID,
) -> Case:
    """The case's rows, sealed to the current intake key, with ``creator_id`` its first member;
    the caller checked who may open it and records the event (a member's ``create_case``, or an
    import of a referral from another organisation, app.referrals.importing)."""
    intake_key = current_intake_key(session)
    if intake_key is None:
        raise NotFound
    intake_public = trusted_intake_public_key(intake_key, server_secrets.key_integrity_key)
    case_id, data_key, version = uuid.uuid4(), envelope.new_data_key(), intake_key.version
    row_id = str(case_id)
    case = Case(
        id=case_id,
        ref="C-" + human_codes.random_code(CASE_REF_BITS).replace("-", ""),
        status=CaseStatus.OPEN,
        restricted=request.restricted,
        host_country=request.host_country,
        created_on=today(),
        created_by_id=creator_id,
        intake_key_version=version,
        content_key_version=version,
        sealed_data_key=CASE_DATA_KEY.seal(intake_public, data_key, row_id=row_id, key_version=version),
        title_encrypted=CASE_TITLE.seal(data_key, request.title.encode(), row_id=row_id, key_version=version),
        summary_encrypted=CASE_SUMMARY.seal(
            data_key, request.summary.encode(), row_id=row_id, key_version=version
        ),
    )
    session.add(case)
    session.flush()
    session.add_all([CaseTactic(case_id=case.id, tactic=tactic.value) for tactic in request.tactics])
    session.add_all([CaseTip(case_id=case.id, tip_id=tip.id) for tip in tips])
    session.add(CaseMember(case_id=case.id, account_id=creator_id))
    session.flush()
    return case


def load_case(
    session: Session, principal: Principal, case_id: uuid.UUID, *, for_update: bool = False
) -> tuple[Case, bytes]:
    """A case the caller may read, and its data key; NotFound for anything else (restricted included).

    Writers pass ``for_update``: the case row is locked (PostgreSQL) and read again, so that two
    changes to one case (two members removing each other, a close and a status change) are
    decided one after the other. Row locks come before any audit append (see triage.workflow).
    """
    statement = case_readable_by(principal, case_id)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    case = session.scalars(statement).first()
    if case is None:
        raise NotFound
    return case, case_data_key(principal, case)


def case_data_key(principal: Principal, case: Case) -> bytes:
    """The case's data key, unwrapped with the caller's intake key of its version."""
    intake_private = principal.intake_private_key(case.intake_key_version)
    if intake_private is None:
        raise NotFound
    return CASE_DATA_KEY.open(
        intake_private, case.sealed_data_key, row_id=str(case.id), key_version=case.intake_key_version
    )


def add_tip(session: Session, principal: Principal, case_id: uuid.UUID, tip_id: uuid.UUID) -> Case:
    case, _ = load_case(session, principal, case_id, for_update=True)
    [tip] = _verified_tips(session, principal, [tip_id])
    if session.get(CaseTip, {"case_id": case.id, "tip_id": tip.id}) is not None:
        raise Conflict("This report is already in the case.")
    session.add(CaseTip(case_id=case.id, tip_id=tip.id))
    # No ref in the timeline: the report may sit in a restricted case too, and the timeline is
    # read by everyone who sees this one.
    _record(session, principal, case, "tip_add")
    return case


def _require_member_or_lead(session: Session, principal: Principal, case: Case) -> None:
    """Who may change a case's membership: its members, and leads. Anyone else could add
    themselves, restrict the case and remove everyone else, hiding it and its reports."""
    if principal.can(Permission.LEAD_TRIAGE):
        return
    if session.get(CaseMember, {"case_id": case.id, "account_id": principal.account_id}) is None:
        raise Forbidden("Only a member of the case, or a lead, changes its members.")


def add_member(session: Session, principal: Principal, case_id: uuid.UUID, account_id: uuid.UUID) -> Case:
    case, _ = load_case(session, principal, case_id, for_update=True)
    _require_member_or_lead(session, principal, case)
    account = content_reader(session, account_id, case.intake_key_version)
    if account is None:
        raise InvalidInput(
            "Members are active caseworkers or leads who hold the intake key.",
            fields=[{"field": "account_id", "message": "not a member who can read this case"}],
        )
    if session.get(CaseMember, {"case_id": case.id, "account_id": account.id}) is not None:
        raise Conflict("This member is already on the case.")
    session.add(CaseMember(case_id=case.id, account_id=account.id))
    _record(session, principal, case, "member_add", detail=account.username)
    return case


def remove_member(session: Session, principal: Principal, case_id: uuid.UUID, account_id: uuid.UUID) -> Case:
    case, _ = load_case(session, principal, case_id, for_update=True)
    _require_member_or_lead(session, principal, case)
    member = session.get(CaseMember, {"case_id": case.id, "account_id": account_id})
    if member is None:
        raise NotFound
    remaining = session.scalar(
        select(func.count()).select_from(CaseMember).where(CaseMember.case_id == case.id)
    )
    if remaining == 1:
        # A restricted case without members would exist for nobody.
        raise Conflict("A case keeps at least one member.")
    account = session.get(StaffAccount, account_id)
    session.delete(member)
    _record(session, principal, case, "member_remove", detail=account.username if account else None)
    return case


def change_status(
    session: Session,
    principal: Principal,
    case_id: uuid.UUID,
    status: CaseStatus,
    resolution_note: str | None,
) -> Case:
    case, data_key = load_case(session, principal, case_id, for_update=True)
    if status not in NEXT_STATUSES[case.status]:
        raise IllegalCaseTransition(f"A case that is {case.status.value} cannot become {status.value}.")
    if status is CaseStatus.CLOSED:
        if not resolution_note:
            raise InvalidInput(
                "Closing a case needs a resolution note.",
                fields=[{"field": "resolution_note", "message": "required to close"}],
            )
        case.resolution_encrypted = CASE_RESOLUTION.seal(
            data_key, resolution_note.encode(), row_id=str(case.id), key_version=case.content_key_version
        )
        case.closed_on = today()
    previous = case.status
    case.status = status
    _record(session, principal, case, "status", detail=f"{previous.value} to {status.value}")
    return case


def set_restricted(session: Session, principal: Principal, case_id: uuid.UUID, restricted: bool) -> Case:
    """Only a member may restrict or open a case (a restricted one is invisible to anyone else)."""
    case, _ = load_case(session, principal, case_id, for_update=True)
    if session.get(CaseMember, {"case_id": case.id, "account_id": principal.account_id}) is None:
        # Forbidden, like every other "you may see this case but not make this change".
        raise Forbidden("Only a member of the case can change who sees it.")
    case.restricted = restricted
    _record(session, principal, case, "restrict" if restricted else "unrestrict")
    return case


def add_note(session: Session, principal: Principal, case_id: uuid.UUID, body: str) -> CaseNote:
    case, data_key = load_case(session, principal, case_id, for_update=True)
    note_id = uuid.uuid4()
    note = CaseNote(
        id=note_id,
        case_id=case.id,
        author_id=principal.account_id,
        written_on=today(),
        body_encrypted=CASE_NOTE_BODY.seal(
            data_key,
            body.encode(),
            row_id=case_note_row_id(case.id, note_id),
            key_version=case.content_key_version,
        ),
    )
    session.add(note)
    _record(session, principal, case, "note")
    session.flush()
    return note


def link_row_id(case_id: uuid.UUID, link_id: uuid.UUID) -> str:
    """The row id a station link's evidence is bound to: the link *and* its case."""
    return f"{case_id}/{link_id}"
