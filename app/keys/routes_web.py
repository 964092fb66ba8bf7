"""The key grants page for leads."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from app.auth.deps import GrantManager
from app.auth.principal import Principal
from app.auth.sessions import recently_reauthenticated
from app.keys import grants
from app.keys.routes_api import grant_candidates
from app.web.context import Context, DbSession
from app.web.forms import read_form
from app.web.pages import render_staff_page

router = APIRouter()


def _keys_page(
    request: Request, lead: Principal, session: DbSession, *, status_code: int = 200, error: str | None = None
) -> HTMLResponse:
    return render_staff_page(
        request,
        "staff/keys.html",
        principal=lead,
        status_code=status_code,
        candidates=grant_candidates(session),
        error=error,
        needs_step_up=not recently_reauthenticated(lead),
    )


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, lead: GrantManager, session: DbSession) -> HTMLResponse:
    return _keys_page(request, lead, session)


@router.post("/keys/{account_id}/{action}", response_class=HTMLResponse)
async def change_grant(
    account_id: uuid.UUID,
    action: str,
    request: Request,
    lead: GrantManager,
    session: DbSession,
    context: Context,
) -> Response:
    await read_form(request, context.settings, csrf_token=lead.csrf_token)
    if not recently_reauthenticated(lead):
        return _keys_page(
            request, lead, session, status_code=403, error="Confirm your password first, then try again."
        )
    if action == "grant":
        grants.grant_to_member(session, lead, account_id, server_secrets=context.secrets)
    elif action == "revoke":
        grants.revoke_from_member(session, lead, account_id)
    else:
        return _keys_page(request, lead, session, status_code=404, error="Unknown action.")
    return RedirectResponse("/keys", status_code=303)
