"""The notice pages: a member's own preferences, and the organisation's channels for admins."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from app.auth.deps import AccountAdmin, CurrentStaff
from app.auth.principal import Principal
from app.kit.errors import InvalidInput
from app.notify import preferences
from app.notify.models import DeliveryMode
from app.notify.sender import backlog
from app.web.context import Context, DbSession
from app.web.forms import read_form
from app.web.pages import render_staff_page

router = APIRouter()

MEMBER_PATH = "/account/notifications"
ADMIN_PATH = "/admin/notifications"


def _member_page(
    request: Request,
    principal: Principal,
    session: DbSession,
    context: Context,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    mine = preferences.member_preferences(session, principal.account_id, context.secrets.key_integrity_key)
    organisation = preferences.organisation_channels(session, context.secrets.key_integrity_key)
    return render_staff_page(
        request,
        "staff/notifications.html",
        principal=principal,
        status_code=status_code,
        error=error,
        mine=mine,
        mail_ready=context.settings.smtp_url is not None and organisation.email_enabled,
        digest_hours=organisation.digest_hours,
        batch_seconds=context.settings.notify_batch_seconds,
    )


@router.get(MEMBER_PATH, response_class=HTMLResponse)
def member_notifications_page(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> HTMLResponse:
    return _member_page(request, principal, session, context)


@router.post(MEMBER_PATH, response_class=HTMLResponse)
async def member_notifications_form(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def save() -> Response:
        try:
            mode = DeliveryMode(fields.get("mode", ""))
        except ValueError:
            return _member_page(
                request, principal, session, context, error="Choose immediate or digest.", status_code=422
            )
        try:
            with session.begin_nested():
                preferences.save_member_preferences(
                    session,
                    principal.actor,
                    principal.account_id,
                    enabled=fields.get("enabled") == "on",
                    mode=mode,
                    address=fields.get("address", ""),
                    openpgp_key=fields.get("openpgp_key", ""),
                    integrity_key=context.secrets.key_integrity_key,
                )
        except InvalidInput as refusal:
            return _member_page(
                request, principal, session, context, error=refusal.public_message, status_code=422
            )
        return RedirectResponse(MEMBER_PATH, status_code=303)

    return await run_in_threadpool(save)


def _admin_page(
    request: Request,
    admin: Principal,
    session: DbSession,
    context: Context,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    integrity_key = context.secrets.key_integrity_key
    organisation = preferences.organisation_channels(session, integrity_key)
    return render_staff_page(
        request,
        "staff/notifications_admin.html",
        principal=admin,
        status_code=status_code,
        error=error,
        organisation=organisation,
        signing_key=organisation.webhook_signing_key.hex() if organisation.webhook_signing_key else None,
        digest_choices=preferences.DIGEST_HOURS,
        mail_server=context.settings.smtp_url is not None,
        mail_from=context.settings.mail_from,
        backlog=backlog(session),
    )


@router.get(ADMIN_PATH, response_class=HTMLResponse)
def admin_notifications_page(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> HTMLResponse:
    return _admin_page(request, admin, session, context)


@router.post(ADMIN_PATH, response_class=HTMLResponse)
async def admin_notifications_form(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=admin.csrf_token)

    def save() -> Response:
        try:
            digest_hours = int(fields.get("digest_hours", ""))
        except ValueError:
            digest_hours = 0
        try:
            with session.begin_nested():
                preferences.save_organisation_channels(
                    session,
                    admin.actor,
                    email_enabled=fields.get("email_enabled") == "on",
                    webhook_url=fields.get("webhook_url", ""),
                    digest_hours=digest_hours,
                    new_signing_key=fields.get("new_signing_key") == "on",
                    integrity_key=context.secrets.key_integrity_key,
                )
        except InvalidInput as refusal:
            return _admin_page(
                request, admin, session, context, error=refusal.public_message, status_code=422
            )
        return RedirectResponse(ADMIN_PATH, status_code=303)

    return await run_in_threadpool(save)
