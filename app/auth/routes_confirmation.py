"""A lead confirms a member's key pair over the API (app.auth.confirmation).

Under /api/v1/accounts, as the account it changes, but for leads: the permission that guards key
grants, since confirming is what makes a member eligible for one.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import StringConstraints

from app.auth import accounts, confirmation
from app.auth.deps import GrantManager
from app.auth.routes_api import account_view
from app.auth.schemas import AccountView, StrictBody
from app.kit.errors import app_error_response, error_responses
from app.web.context import Context, DbSession
from app.web.json_body import JsonBody

# 403 for one's own account, 409 for an account not activated, 422 for a fingerprint that differs.
router = APIRouter(
    prefix="/api/v1/accounts", responses=error_responses(401, 403, 404, 409, 422, 500, 503, 507)
)


class ConfirmRequest(StrictBody):
    # As the member reads it out from their account page; case, spaces and dashes do not matter.
    fingerprint: Annotated[
        str, StringConstraints(min_length=1, max_length=confirmation.MAX_TYPED_FINGERPRINT)
    ]


@router.post("/{account_id}/confirm", response_model=AccountView)
def confirm_account(
    account_id: uuid.UUID,
    lead: GrantManager,
    session: DbSession,
    context: Context,
    body: JsonBody[ConfirmRequest],
) -> Response | AccountView:
    account = confirmation.account_to_confirm(session, account_id)
    confirmed = confirmation.confirm_account(
        session,
        account,
        body.fingerprint,
        actor=lead.actor,
        key_integrity_key=context.secrets.key_integrity_key,
    )
    if not confirmed:
        # Returned, not raised: the failed attempt's audit event must commit.
        return app_error_response(confirmation.FingerprintMismatch())
    view = account_view(account, accounts.accounts_holding_keys(session))
    return view.model_copy(update={"confirmed": confirmation.is_confirmed(account)})
