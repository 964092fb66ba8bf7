"""Case and tip queries scoped to the caller. A restricted case, and every tip in it, exists only
for its members: the rule lives here, inside the SQL, never in a handler. Triage's queue and
cases both read tips through `tips_visible_to` and `tips_readable_by`."""

from __future__ import annotations

import uuid

from sqlalchemy import Exists, Select, exists, false, or_, select

from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.cases.models import Case, CaseMember, CaseTip
from app.intake.models import Tip


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


def tips_visible_to(principal: Principal) -> Select[Tip]:
    """Tips the caller may see in the queue; an empty query for roles without the queue."""
    statement = select(Tip)
    if not principal.can(Permission.VIEW_QUEUE):
        return statement.where(false())
    # A tip in a restricted case is seen by that case's members only.
    return statement.where(Tip.id.not_in(tips_hidden_from(principal)))


def tip_ids_hidden_in_queue_from(principal: Principal) -> Select[uuid.UUID]:
    """The ids `tips_visible_to` leaves out for a caller who may see the queue, each once: tips
    in a restricted case they are not a member of. The queue counts every tip from counters,
    then takes these away, so this is the one list the rule and the counts must agree on."""
    return tips_hidden_from(principal).distinct()


def tips_readable_by(principal: Principal) -> Select[Tip]:
    """Tips whose content the caller may read: the role permits it and the key is unlocked."""
    statement = tips_visible_to(principal)
    if not principal.can(Permission.READ_TIP_CONTENT):
        return statement.where(false())
    unlocked_versions = sorted(principal.keys.intake)
    return statement.where(Tip.intake_key_version.in_(unlocked_versions))


def tip_readable_by(principal: Principal, tip_id: uuid.UUID) -> Select[Tip]:
    return tips_readable_by(principal).where(Tip.id == tip_id)
