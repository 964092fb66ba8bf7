"""The key grants page for leads: confirming members' key pairs, granting and revoking.

Revoking the last holder's grant of the current intake key version answers 409 with the page
and a second form: the lead ticks that they understand, and posts again with
``confirm_last_holder=yes``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.auth import confirmation
from app.auth.deps import GrantManager
from app.auth.principal import Principal
from app.auth.sessions import recently_reauthenticated
from app.keys import grants
from app.keys.routes_api import awaiting_confirmation, grant_candidates
from app.kit.errors import AppError
from app.web.context import Context, DbSession
from app.web.forms import read_form
from app.web.pages import render_staff_page

router = APIRouter()

NOTICES = {
    "confirmed": "Password confirmed for the next five minutes.",
    "member_confirmed": "Key confirmed: you can now grant the intake key to this member.",
}


def _keys_page(
    request: Request,
    lead: Principal,
    session: DbSession,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    last_holder: dict[str, object] | None = None,
) -> HTMLResponse:
    return render_staff_page(
        request,
        "staff/keys.html",
        principal=lead,
        status_code=status_code,
        candidates=grant_candidates(session),
        awaiting=awaiting_confirmation(session),
        error=error,
        notice=notice,
        needs_step_up=not recently_reauthenticated(lead),
        last_holder=last_holder,
    )


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, lead: GrantManager, session: DbSession) -> HTMLResponse:
    return _keys_page(request, lead, session, notice=NOTICES.get(request.query_params.get("done", "")))


# Declared before /keys/{account_id}/{action}, which would otherwise take "confirm" for an id.
@router.post("/keys/confirm/{account_id}", response_class=HTMLResponse)
async def confirm_member(
    account_id: uuid.UUID, request: Request, lead: GrantManager, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=lead.csrf_token)
    try:
        account = confirmation.account_to_confirm(session, account_id)
        confirmed = confirmation.confirm_account(
            session,
            account,
            fields.get("fingerprint", ""),
            actor=lead.actor,
            key_integrity_key=context.secrets.key_integrity_key,
        )
    except AppError as exc:  # one's own account, not activated, gone: nothing was changed
        return _keys_page(request, lead, session, status_code=exc.status, error=exc.public_message)
    if not confirmed:
        # Returned, not raised: the failed attempt's audit event commits with this page.
        mismatch = confirmation.FingerprintMismatch()
        return _keys_page(request, lead, session, status_code=mismatch.status, error=mismatch.public_message)
    return RedirectResponse("/keys?done=member_confirmed", status_code=303)


@router.post("/keys/{account_id}/{action}", response_class=HTMLResponse)
async def change_grant(
    account_id: uuid.UUID,
    action: str,
    request: Request,
    lead: GrantManager,
    session: DbSession,
    context: Context,
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=lead.csrf_token)
    if not recently_reauthenticated(lead):
        return _keys_page(
            request, lead, session, status_code=403, error="Confirm your password first, then try again."
        )
    if action == "grant":
        grants.grant_to_member(session, lead, account_id, server_secrets=context.secrets)
    elif action == "revoke":
        try:
            grants.revoke_from_member(
                session, lead, account_id, confirm_last_holder=fields.get("confirm_last_holder") == "yes"
            )
        except grants.LastKeyHolder as exc:  # nothing was changed: the page asks to confirm
            revocation = {
                "account_id": account_id,
                "username": exc.username,
                "key_version": exc.key_version,
                "own": account_id == lead.account_id,
            }
            return _keys_page(
                request,
                lead,
                session,
                status_code=exc.status,
                error=exc.public_message,
                last_holder=revocation,
            )
    else:
        return _keys_page(request, lead, session, status_code=404, error="Unknown action.")
    return RedirectResponse("/keys", status_code=303)
