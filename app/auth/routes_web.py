"""The staff UI's identity pages: login, account, one-time links and account administration.

Plain HTML forms (no script): every post comes from this site only, and every
post made while signed in carries the session's CSRF token (app.web.forms).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from app.auth import accounts, credentials, sessions
from app.auth.deps import AccountAdmin, CurrentStaff, clear_session_cookie, set_session_cookie
from app.auth.enrolment_qr import qr_svg, totp_provisioning_uri
from app.auth.models import LinkPurpose, Role
from app.auth.password_keys import key_fingerprint
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.auth.routes_api import account_view
from app.auth.schemas import CreateAccountRequest
from app.kit.errors import AppError
from app.web.context import Context, DbSession
from app.web.forms import read_form
from app.web.pages import render_staff_page
from app.web.request_body import validate_model

router = APIRouter()

LINK_PAGES = {
    LinkPurpose.ACTIVATION: ("Activate your account", "Activate"),
    LinkPurpose.PASSWORD_RESET: ("Choose a new password", "Set password"),
    LinkPurpose.TOTP_RESET: ("Set up two-factor again", "Confirm"),
}


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def signed_out(request: Request, context: Context) -> Response:
    response = see_other("/login")
    clear_session_cookie(request, response, context.settings)
    return response


def home_path(principal: Principal) -> str:
    if principal.can(Permission.VIEW_QUEUE):
        return "/tips"
    if principal.can(Permission.MANAGE_ACCOUNTS):
        return "/admin/accounts"
    if principal.can(Permission.READ_AUDIT_LOG):
        return "/audit"
    return "/account"


@router.get("/", response_class=HTMLResponse)
def home(principal: CurrentStaff) -> Response:
    return see_other(home_path(principal))


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return render_staff_page(request, "staff/login.html")


@router.post("/login", response_class=HTMLResponse)
async def login_form(request: Request, session: DbSession, context: Context) -> Response:
    fields = await read_form(request, context.settings)

    def authenticate() -> Response:
        outcome = credentials.authenticate(
            session,
            username=fields.get("username", "")[:64],
            password=fields.get("password", "")[:1024],
            otp=fields.get("otp", "")[:16],
            settings=context.settings,
            totp_key=context.secrets.totp_key,
            key_integrity_key=context.secrets.key_integrity_key,
        )
        if outcome is None:
            # Returned, not raised: the failure counter must commit.
            return render_staff_page(
                request,
                "staff/login.html",
                status_code=401,
                error="Wrong username, password or one-time code.",
                username=fields.get("username", "")[:64],
            )
        account, keys = outcome
        response = see_other("/")
        set_session_cookie(
            request,
            response,
            context.settings,
            sessions.start_session(session, account, keys, integrity_key=context.secrets.key_integrity_key),
        )
        return response

    return await run_in_threadpool(authenticate)


@router.post("/logout")
async def logout_form(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)
    sessions.log_out(session, principal)
    return signed_out(request, context)


def _account_page(
    request: Request, principal: Principal, session: DbSession, status_code: int = 200, **context: object
) -> HTMLResponse:
    return render_staff_page(
        request,
        "staff/account.html",
        principal=principal,
        status_code=status_code,
        holds_key=bool(principal.keys.intake),
        # From the key this login unlocked, not from the database: what a lead compares before
        # a grant (app.keys.routes_web shows the stored key's).
        key_fingerprint=key_fingerprint(principal.keys.personal.public_key().raw),
        sessions=[
            {
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "current": s.id == principal.session_id,
            }
            for s in sessions.sessions_of(session, principal.account_id)
        ],
        **context,
    )


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, principal: CurrentStaff, session: DbSession) -> HTMLResponse:
    notice = {
        "password": "Your password was changed. Your other sessions were ended.",
        "confirmed": "Password confirmed for the next five minutes.",
    }.get(request.query_params.get("done", ""))
    return _account_page(request, principal, session, notice=notice)


@router.post("/account/password", response_class=HTMLResponse)
async def change_password_form(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def change() -> Response:
        try:
            changed = credentials.change_password(
                session,
                principal,
                fields.get("current_password", ""),
                fields.get("new_password", "")[:1024],
                settings=context.settings,
            )
        except AppError as exc:  # the new password is too weak: nothing changed
            return _account_page(request, principal, session, exc.status, error=exc.public_message)
        if not changed:
            return _account_page(
                request, principal, session, 403, error="Your current password did not match."
            )
        return see_other("/account?done=password")

    return await run_in_threadpool(change)


SAFE_NEXT_PATHS = frozenset({"/account", "/keys"})


@router.post("/account/step-up", response_class=HTMLResponse)
async def step_up_form(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)
    confirmed = await run_in_threadpool(sessions.step_up, session, principal, fields.get("password", ""))
    if not confirmed:
        return _account_page(request, principal, session, 403, error="Your password did not match.")
    # Only known local paths: no open redirect through a crafted "next".
    next_path = fields.get("next", "/account")
    return see_other((next_path if next_path in SAFE_NEXT_PATHS else "/account") + "?done=confirmed")


@router.post("/account/logout-everywhere")
async def logout_everywhere_form(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)
    sessions.log_out_everywhere(session, principal)
    return signed_out(request, context)


def _link_page(
    request: Request,
    token: str,
    opened: accounts.OpenLink,
    context: Context,
    status_code: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    secret = accounts.enrolment_secret(opened, context.secrets)
    heading, button = LINK_PAGES[opened.link.purpose]
    return render_staff_page(
        request,
        "staff/link.html",
        status_code=status_code,
        error=error,
        token=token,
        heading=heading,
        button=button,
        purpose=opened.link.purpose.value,
        username=opened.account.username,
        totp_secret=secret,
        qr_svg=qr_svg(totp_provisioning_uri(secret, opened.account.username)) if secret else None,
    )


@router.get("/link/{token}", response_class=HTMLResponse)
def link_page(token: str, request: Request, session: DbSession, context: Context) -> HTMLResponse:
    return _link_page(request, token, accounts.open_link(session, token), context)


@router.post("/link/{token}", response_class=HTMLResponse)
async def link_form(token: str, request: Request, session: DbSession, context: Context) -> Response:
    fields = await read_form(request, context.settings)

    def complete() -> Response:
        opened = accounts.open_link(session, token)
        try:
            accounts.complete_link(
                session,
                opened,
                otp=fields.get("otp", "")[:16],
                new_password=fields.get("new_password"),
                current_password=fields.get("current_password"),
                settings=context.settings,
                server_secrets=context.secrets,
            )
        except AppError as exc:
            # The link stays usable; the page says what to fix. (The failed
            # code check may have advanced nothing: rollback is not needed.)
            return _link_page(request, token, opened, context, exc.status, exc.public_message)
        return render_staff_page(
            request, "staff/error.html", heading="Done", message="You can now log in.", status=200
        )

    return await run_in_threadpool(complete)


def _accounts_page(
    request: Request,
    admin: Principal,
    session: DbSession,
    *,
    status_code: int = 200,
    issued: dict[str, str] | None = None,
    error: str | None = None,
) -> HTMLResponse:
    key_holders = accounts.accounts_holding_keys(session)
    return render_staff_page(
        request,
        "staff/accounts.html",
        principal=admin,
        status_code=status_code,
        accounts=[account_view(a, key_holders) for a in accounts.list_accounts(session)],
        roles=[role.value for role in Role],
        issued=issued,
        error=error,
    )


def _issued(request: Request, username: str, token: str) -> dict[str, str]:
    return {"username": username, "url": str(request.url_for("link_page", token=token))}


@router.get("/admin/accounts", response_class=HTMLResponse)
def accounts_page(request: Request, admin: AccountAdmin, session: DbSession) -> HTMLResponse:
    return _accounts_page(request, admin, session)


@router.post("/admin/accounts", response_class=HTMLResponse)
async def create_account_form(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> HTMLResponse:
    fields = await read_form(request, context.settings, csrf_token=admin.csrf_token)

    def create() -> HTMLResponse:
        try:
            body = validate_model(
                CreateAccountRequest, {"username": fields.get("username", ""), "role": fields.get("role", "")}
            )
            account, token = accounts.invite_account(
                session,
                username=body.username,
                role=body.role,
                actor=admin.actor,
                server_secrets=context.secrets,
            )
        except AppError as exc:
            return _accounts_page(
                request,
                admin,
                session,
                status_code=exc.status,
                error=f"{exc.public_message} Usernames: 3 to 64 lowercase letters, digits, '.', '_' or '-'.",
            )
        return _accounts_page(
            request, admin, session, status_code=201, issued=_issued(request, account.username, token)
        )

    return await run_in_threadpool(create)


@router.get("/admin/accounts/{account_id}", response_class=HTMLResponse)
def account_admin_page(
    account_id: uuid.UUID, request: Request, admin: AccountAdmin, session: DbSession
) -> HTMLResponse:
    account = accounts.account_for_admin(session, account_id)
    return render_staff_page(
        request,
        "staff/account_admin.html",
        principal=admin,
        account=account_view(account, accounts.accounts_holding_keys(session)),
        roles=[role.value for role in Role],
    )


@router.post("/admin/accounts/{account_id}", response_class=HTMLResponse)
async def update_account_form(
    account_id: uuid.UUID, request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=admin.csrf_token)
    role = Role(fields["role"]) if fields.get("role") in {r.value for r in Role} else None
    is_active = {"true": True, "false": False}.get(fields.get("is_active", ""))
    account = accounts.account_for_admin(session, account_id)
    accounts.update_account(session, account, actor=admin.actor, role=role, is_active=is_active)
    return see_other(f"/admin/accounts/{account_id}")


def _reset_form(purpose: LinkPurpose) -> Callable[..., Awaitable[HTMLResponse]]:
    async def reset(
        account_id: uuid.UUID, request: Request, admin: AccountAdmin, session: DbSession, context: Context
    ) -> HTMLResponse:
        await read_form(request, context.settings, csrf_token=admin.csrf_token)
        account = accounts.account_for_admin(session, account_id)
        token = accounts.issue_link(
            session, account, purpose, actor=admin.actor, server_secrets=context.secrets
        )
        return _accounts_page(
            request, admin, session, status_code=201, issued=_issued(request, account.username, token)
        )

    return reset


router.add_api_route(
    "/admin/accounts/{account_id}/reset-password",
    _reset_form(LinkPurpose.PASSWORD_RESET),
    methods=["POST"],
    response_class=HTMLResponse,
    name="reset_password_form",
)
router.add_api_route(
    "/admin/accounts/{account_id}/reset-2fa",
    _reset_form(LinkPurpose.TOTP_RESET),
    methods=["POST"],
    response_class=HTMLResponse,
    name="reset_two_factor_form",
)
