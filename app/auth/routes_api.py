from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.auth import accounts, credentials, lockout, sessions
from app.auth.deps import AccountAdmin, CurrentStaff, clear_session_cookie, set_session_cookie
from app.auth.enrolment_qr import totp_provisioning_uri
from app.auth.models import LinkPurpose, StaffAccount
from app.auth.principal import Principal
from app.auth.schemas import (
    AccountView,
    ChangePasswordRequest,
    CompleteLinkRequest,
    CreateAccountRequest,
    LinkIssued,
    LinkView,
    LoginRequest,
    SessionInfo,
    SessionView,
    StepUpRequest,
    UpdateAccountRequest,
)
from app.kit.clock import as_utc, utc_now
from app.kit.errors import error_body, error_responses
from app.web.context import Context, DbSession
from app.web.json_body import JsonBody

# 401 without a session (or a wrong login), 403 for a wrong password or a missing step-up.
router = APIRouter(prefix="/api/v1/auth", responses=error_responses(401, 403, 500, 503, 507))
accounts_router = APIRouter(
    prefix="/api/v1/accounts", responses=error_responses(401, 403, 404, 409, 500, 503, 507)
)
# The token is the credential: an unknown, used or expired one is 404.
links_router = APIRouter(
    prefix="/api/v1/account-links", responses=error_responses(403, 404, 409, 500, 503, 507)
)

WRONG_PASSWORD = error_body("password_rejected", "Your password did not match.")

INVALID_LOGIN = error_body("invalid_credentials", "Wrong username, password or one-time code.")


@router.post("/login", response_model=SessionInfo)
def login(request: Request, session: DbSession, context: Context, body: JsonBody[LoginRequest]) -> Response:
    outcome = credentials.authenticate(
        session,
        username=body.username,
        password=body.password,
        otp=body.otp,
        settings=context.settings,
        totp_key=context.secrets.totp_key,
        key_integrity_key=context.secrets.key_integrity_key,
    )
    if outcome is None:
        # Returned, not raised: the failure counter must commit.
        return JSONResponse(INVALID_LOGIN, status_code=401)
    account, keys = outcome
    cookie_value = sessions.start_session(
        session, account, keys, integrity_key=context.secrets.key_integrity_key
    )
    response = JSONResponse(
        SessionInfo(
            username=account.username, role=account.role, holds_intake_key=bool(keys.intake)
        ).model_dump()
    )
    set_session_cookie(request, response, context.settings, cookie_value)
    return response


@router.post("/logout", status_code=204)
def logout(request: Request, principal: CurrentStaff, session: DbSession, context: Context) -> Response:
    sessions.log_out(session, principal)
    response = Response(status_code=204)
    clear_session_cookie(request, response, context.settings)
    return response


@router.get("/session", response_model=SessionInfo)
def whoami(principal: CurrentStaff) -> SessionInfo:
    return SessionInfo(
        username=principal.username, role=principal.role, holds_intake_key=bool(principal.keys.intake)
    )


@router.post("/step-up", status_code=204)
def step_up(principal: CurrentStaff, session: DbSession, body: JsonBody[StepUpRequest]) -> Response:
    confirmed = sessions.step_up(session, principal, body.password)
    # Returned, not raised: a wrong password counts towards the lockout.
    return Response(status_code=204) if confirmed else JSONResponse(WRONG_PASSWORD, status_code=403)


@router.post("/password", status_code=204)
def change_password(
    principal: CurrentStaff, session: DbSession, context: Context, body: JsonBody[ChangePasswordRequest]
) -> Response:
    changed = credentials.change_password(
        session, principal, body.current_password, body.new_password, settings=context.settings
    )
    return Response(status_code=204) if changed else JSONResponse(WRONG_PASSWORD, status_code=403)


@router.get("/sessions", response_model=list[SessionView])
def list_sessions(principal: CurrentStaff, session: DbSession) -> list[SessionView]:
    return [
        SessionView(
            id=row.id,
            # SQLite gives back naive datetimes: the API always answers with the zone.
            created_at=as_utc(row.created_at),
            last_seen_at=as_utc(row.last_seen_at),
            current=row.id == principal.session_id,
        )
        for row in sessions.sessions_of(session, principal.account_id)
    ]


@router.post("/logout-everywhere", status_code=204)
def logout_everywhere(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    sessions.log_out_everywhere(session, principal)
    response = Response(status_code=204)
    clear_session_cookie(request, response, context.settings)
    return response


def account_view(account: StaffAccount, key_holders: set[uuid.UUID]) -> AccountView:
    return AccountView(
        id=account.id,
        username=account.username,
        role=account.role,
        is_active=account.is_active,
        activated=account.login_verifier is not None,
        locked=lockout.is_locked(account, utc_now()),
        holds_intake_key=account.id in key_holders,
        confirmed=account.confirmed_at is not None,
        created_on=account.created_on,
    )


def link_issued(account: StaffAccount, purpose: LinkPurpose, token: str) -> LinkIssued:
    return LinkIssued(
        account_id=account.id,
        purpose=purpose,
        link_path=f"/link/{token}",
        expires_in_hours=int(accounts.LINK_LIFETIME.total_seconds() // 3600),
    )


@accounts_router.get("", response_model=list[AccountView])
def list_accounts(_admin: AccountAdmin, session: DbSession) -> list[AccountView]:
    key_holders = accounts.accounts_holding_keys(session)
    return [account_view(account, key_holders) for account in accounts.list_accounts(session)]


@accounts_router.post("", status_code=201, response_model=LinkIssued)
def create_account(
    admin: AccountAdmin, session: DbSession, context: Context, body: JsonBody[CreateAccountRequest]
) -> LinkIssued:
    account, token = accounts.invite_account(
        session,
        username=body.username,
        role=body.role,
        actor=admin.actor,
        server_secrets=context.secrets,
    )
    return link_issued(account, LinkPurpose.ACTIVATION, token)


@accounts_router.get("/{account_id}", response_model=AccountView)
def get_account(account_id: uuid.UUID, _admin: AccountAdmin, session: DbSession) -> AccountView:
    account = accounts.account_for_admin(session, account_id)
    return account_view(account, accounts.accounts_holding_keys(session))


@accounts_router.patch("/{account_id}", response_model=AccountView)
def update_account(
    account_id: uuid.UUID, admin: AccountAdmin, session: DbSession, body: JsonBody[UpdateAccountRequest]
) -> AccountView:
    account = accounts.account_for_admin(session, account_id)
    accounts.update_account(session, account, actor=admin.actor, role=body.role, is_active=body.is_active)
    return account_view(account, accounts.accounts_holding_keys(session))


def _reset(
    session: DbSession, context: Context, admin: Principal, account_id: uuid.UUID, purpose: LinkPurpose
) -> LinkIssued:
    account = accounts.account_for_admin(session, account_id)
    token = accounts.issue_link(session, account, purpose, actor=admin.actor, server_secrets=context.secrets)
    return link_issued(account, purpose, token)


@accounts_router.post("/{account_id}/reset-password", status_code=201, response_model=LinkIssued)
def reset_password(
    account_id: uuid.UUID, admin: AccountAdmin, session: DbSession, context: Context
) -> LinkIssued:
    return _reset(session, context, admin, account_id, LinkPurpose.PASSWORD_RESET)


@accounts_router.post("/{account_id}/reset-2fa", status_code=201, response_model=LinkIssued)
def reset_two_factor(
    account_id: uuid.UUID, admin: AccountAdmin, session: DbSession, context: Context
) -> LinkIssued:
    return _reset(session, context, admin, account_id, LinkPurpose.TOTP_RESET)


@links_router.get("/{token}", response_model=LinkView)
def view_link(token: str, session: DbSession, context: Context) -> LinkView:
    opened = accounts.open_link(session, token)
    secret = accounts.enrolment_secret(opened, context.secrets)
    return LinkView(
        purpose=opened.link.purpose,
        username=opened.account.username,
        totp_secret=secret,
        totp_uri=totp_provisioning_uri(secret, opened.account.username) if secret else None,
    )


@links_router.post("/{token}", status_code=204)
def complete_link(
    token: str, session: DbSession, context: Context, body: JsonBody[CompleteLinkRequest]
) -> Response:
    accounts.complete_link(
        session,
        accounts.open_link(session, token),
        otp=body.otp,
        new_password=body.new_password,
        current_password=body.current_password,
        settings=context.settings,
        server_secrets=context.secrets,
    )
    return Response(status_code=204)
