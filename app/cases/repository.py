"""Case queries scoped to the caller. A restricted case, and every tip in it, exists only for
its members: the rule lives here and in `tips_visible_to`, inside the SQL, never in a handler."""

from __future__ import annotations

import uuid

from sqlalchemy import Exists, Select, exists, false, or_, select

from app.auth.permissions import Permission
from app.auth.service import Principal
from app.cases.models import Case, CaseMember, CaseTip


def is_member(principal: Principal) -> Exists:
    return exists().where(CaseMember.case_id == Case.id, CaseMember.account_id == principal.account_id)


def tips_hidden_from(principal: Principal) -> Select[uuid.UUID]:
    """Ids of tips in a restricted case the caller is not a member of."""
    return (
        select(CaseTip.tip_id)
        .join(Case, Case.id == CaseTip.case_id)
        .where(Case.restricted.is_(True), ~is_member(principal))
    )


def cases_visible_to(principal: Principal) -> Select[Case]:
    statement = select(Case)
    if not principal.can(Permission.WORK_CASES):
        return statement.where(false())
    return statement.where(or_(Case.restricted.is_(False), is_member(principal)))


def case_readable_by(principal: Principal, case_id: uuid.UUID) -> Select[Case]:
    """The case, if visible and its key version unlocked by the caller."""
    return cases_visible_to(principal).where(
        Case.id == case_id, Case.intake_key_version.in_(sorted(principal.keys.intake))
    )
