"""Tip queries scoped to the caller: handlers never load a tip by bare id."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, false, select

from app.auth.permissions import Permission
from app.auth.service import Principal
from app.cases.repository import tips_hidden_from
from app.intake.models import Tip


def tips_visible_to(principal: Principal) -> Select[Tip]:
    """Tips the caller may see in the queue; an empty query for roles without the queue."""
    statement = select(Tip)
    if not principal.can(Permission.VIEW_QUEUE):
        return statement.where(false())
    # A tip in a restricted case is seen by that case's members only.
    return statement.where(Tip.id.not_in(tips_hidden_from(principal)))


def tips_readable_by(principal: Principal) -> Select[Tip]:
    """Tips whose content the caller may read: the role permits it and the key is unlocked."""
    statement = tips_visible_to(principal)
    if not principal.can(Permission.READ_TIP_CONTENT):
        return statement.where(false())
    unlocked_versions = sorted(principal.keys.intake)
    return statement.where(Tip.intake_key_version.in_(unlocked_versions))


def tip_readable_by(principal: Principal, tip_id: uuid.UUID) -> Select[Tip]:
    return tips_readable_by(principal).where(Tip.id == tip_id)
