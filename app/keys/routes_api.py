"""Key grants over the API: leads who hold the intake key grant it and revoke it.

Only to members whose key pair a lead has confirmed with them (app.auth.confirmation): the list
names the others as awaiting confirmation, without a fingerprint, and a grant to one is refused.

Revoking the last holder's grant of the current intake key version is refused (409
``last_key_holder``) unless the request carries ``?confirm_last_holder=true``.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel
from sqlalchemy import select

from app.auth.confirmation import is_confirmed
from app.auth.deps import GrantManager, SteppedUpStaff
from app.auth.models import StaffAccount
from app.auth.password_keys import key_fingerprint
from app.auth.permissions import KEY_HOLDING_ROLES
from app.custody.models import IntakeKeyGrant
from app.keys import grants
from app.kit.errors import error_responses
from app.web.context import Context, DbSession

# 403 also when the password was not confirmed lately (step_up_required).
router = APIRouter(prefix="/api/v1/key-grants", responses=error_responses(401, 403, 404, 409, 500, 503, 507))


class GrantCandidate(BaseModel):
    account_id: uuid.UUID
    username: str
    role: str
    holds_intake_key: bool
    # Compared in person with what the member's own account page shows, before a grant: the
    # key the intake key will be sealed to is the one on the member's device.
    key_fingerprint: str | None = None
    # False: the member's key pair awaits a lead's confirmation (POST
    # /api/v1/accounts/{account_id}/confirm with the fingerprint the member reads out); no grant
    # until then, and no fingerprint here, so that it is the member's that gets typed.
    confirmed: bool = True


def _members_who_can_hold_the_key(session: DbSession) -> list[StaffAccount]:
    members = session.scalars(
        select(StaffAccount)
        .where(StaffAccount.role.in_(KEY_HOLDING_ROLES), StaffAccount.is_active.is_(True))
        .order_by(StaffAccount.username)
    )
    return [m for m in members if m.can_log_in]


def grant_candidates(session: DbSession) -> list[GrantCandidate]:
    """The members a lead may grant the intake key to (or revoke it from): confirmed ones only."""
    holders = set(session.scalars(select(IntakeKeyGrant.account_id)))
    return [
        GrantCandidate(
            account_id=m.id,
            username=m.username,
            role=m.role,
            holds_intake_key=m.id in holders,
            key_fingerprint=None if m.public_key is None else key_fingerprint(m.public_key),
        )
        for m in _members_who_can_hold_the_key(session)
        if is_confirmed(m)
    ]


def awaiting_confirmation(session: DbSession) -> list[GrantCandidate]:
    """Activated caseworkers and leads whose key pair no lead has confirmed yet."""
    holders = set(session.scalars(select(IntakeKeyGrant.account_id)))
    return [
        GrantCandidate(
            account_id=m.id,
            username=m.username,
            role=m.role,
            holds_intake_key=m.id in holders,
            confirmed=False,
        )
        for m in _members_who_can_hold_the_key(session)
        if not is_confirmed(m)
    ]


@router.get("", response_model=list[GrantCandidate])
def list_grants(_lead: GrantManager, session: DbSession) -> list[GrantCandidate]:
    return grant_candidates(session) + awaiting_confirmation(session)


@router.put("/{account_id}", status_code=204)
def grant(
    account_id: uuid.UUID, lead: GrantManager, _recent: SteppedUpStaff, session: DbSession, context: Context
) -> Response:
    grants.grant_to_member(session, lead, account_id, server_secrets=context.secrets)
    return Response(status_code=204)


@router.delete("/{account_id}", status_code=204)
def revoke(
    account_id: uuid.UUID,
    lead: GrantManager,
    _recent: SteppedUpStaff,
    session: DbSession,
    confirm_last_holder: Annotated[
        bool,
        Query(
            description="Required to revoke the grant of the last member who holds the current "
            "intake key version (otherwise 409 last_key_holder): afterwards only the recovery key "
            "can grant it again."
        ),
    ] = False,
) -> Response:
    grants.revoke_from_member(session, lead, account_id, confirm_last_holder=confirm_last_holder)
    return Response(status_code=204)
