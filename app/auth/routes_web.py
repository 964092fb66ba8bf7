"""The staff UI's identity pages: login, account, one-time links and account administration.

Plain HTML forms (no script): every post comes from this site only, and every
post made while signed in carries the session's CSRF token (app.web.forms).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from app.auth import accounts, credentials, passkeys, sessions
from app.auth.deps import (
    AccountAdmin,
    CurrentStaff,
    StepUpRequired,
    clear_login_cookie,
    clear_session_cookie,
    login_cookie_name,
    request_origin_on_loopback,
    set_login_cookie,
    set_session_cookie,
)
from app.auth.enrolment_qr import qr_svg, totp_provisioning_uri
from app.auth.login_policy import LoginPolicy, current_policy, set_policy
from app.auth.models import LinkPurpose, Role, StaffAccount, StaffPasskey
from app.auth.password_keys import key_fingerprint
from app.auth.permissions import Permission
from app.auth.principal import Principal, account_actor
from app.auth.review_policy import (
    ReviewPolicy,
    SecondPerson,
    current_review_policy,
    set_review_policy,
    single_lead_warning,
)
from app.auth.routes_api import account_view
from app.auth.schemas import CreateAccountRequest
from app.kit.errors import AppError
from app.web.context import Context, DbSession
from app.web.forms import read_form
from app.web.pages import allow_page_script, render_staff_page
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


def staff_relying_party(request: Request, context: Context) -> passkeys.RelyingParty | None:
    """Whom passkeys are for here; None when this deployment has not said (no staff origin)."""
    try:
        return passkeys.relying_party(
            context.settings.staff_origin, request_origin_on_loopback(request, context.settings)
        )
    except passkeys.PasskeysUnavailable:
        return None


def _login_page(
    request: Request, session: DbSession, context: Context, *, status_code: int = 200, **page: object
) -> HTMLResponse:
    """The login form with a fresh pre-login token: its CSRF token and the binding of its
    passkey challenge, set as a cookie on the same response.

    That cookie is __Host- and Secure (but in development on loopback), and a browser on plain
    http drops it, so every login from there would end as "expired": the page says why
    instead. The app sees http behind a TLS proxy too and trusts no proxy header, so it judges
    by the address the browser used: a .onion or loopback name keeps Secure cookies; any other
    must be the https staff origin, and a browser whose Origin is http: is on plain http. When
    that is certain the page says so at once, before a password is typed; without a staff
    origin to compare with, only a form posted without the cookie is told what to check. A
    browser that sent the cookie back keeps it, and is told nothing.
    """
    cookie_name, secure_cookie = login_cookie_name(request, context.settings)
    if secure_cookie and request.url.scheme == "http" and not request.cookies.get(cookie_name):
        host = request.headers.get("host", "").lower()
        hostname = host.split("]")[0] + "]" if host.startswith("[") else host.split(":")[0]
        origin = context.settings.staff_origin
        origin_scheme, _, origin_host = (origin or "").lower().partition("://")
        if origin_scheme == "https":
            origin_host = origin_host.removesuffix(":443")
        if hostname.endswith(".onion") or hostname in ("localhost", "127.0.0.1", "[::1]"):
            pass  # browsers keep Secure cookies there: a missing one means the form expired
        elif request.headers.get("origin", "").lower().startswith("http://") or (
            origin_scheme and not (origin_scheme == "https" and host == origin_host)
        ):
            page["error"] = (
                "This connection is not HTTPS, so your browser will not keep the login cookie. "
                "Use the https:// or .onion address" + (f" ({origin})." if origin_scheme == "https" else ".")
            )
        elif request.method == "POST" and not origin_scheme:
            page["error"] = (
                "Your browser sent no login cookie. If this page's address starts with http:// "
                "(not https:// or .onion), it never will: use the https:// or .onion address. "
                "Otherwise the form expired: try again."
            )
    login_token = secrets.token_urlsafe(32)
    rp = staff_relying_party(request, context)
    options = None
    if rp is not None:
        challenge = passkeys.new_challenge(
            context.secrets.key_integrity_key, passkeys.Ceremony.LOGIN, login_token.encode()
        )
        options = passkeys.authentication_options(rp, challenge)
        allow_page_script(request)
    response = render_staff_page(
        request,
        "staff/login.html",
        status_code=status_code,
        login_token=login_token,
        passkey_options=options,
        passkeys_required=current_policy(session).passkeys_required,
        **page,
    )
    set_login_cookie(request, response, context.settings, login_token)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    return _login_page(request, session, context)


@router.post("/login", response_class=HTMLResponse)
async def login_form(request: Request, session: DbSession, context: Context) -> Response:
    fields = await read_form(request, context.settings)
    username = fields.get("username", "")[:64]
    cookie_name, _ = login_cookie_name(request, context.settings)
    login_token = request.cookies.get(cookie_name, "")
    # A login form posted without the token its own page set (login CSRF: a page elsewhere
    # logging the browser into an account of the attacker's choosing) is refused unread.
    if not login_token or not hmac.compare_digest(
        login_token.encode(), fields.get("login_token", "").encode()
    ):
        return _login_page(
            request,
            session,
            context,
            status_code=403,
            error="This login form expired. Try again.",
            username=username,
        )
    rp = staff_relying_party(request, context)
    passkey_response = passkeys.parse_response(fields.get("passkey_response"))

    def authenticate() -> Response:
        outcome = credentials.authenticate(
            session,
            username=username,
            password=fields.get("password", "")[:1024],
            otp=fields.get("otp", "")[:16],
            settings=context.settings,
            totp_key=context.secrets.totp_key,
            key_integrity_key=context.secrets.key_integrity_key,
            passkey=None
            if rp is None
            else credentials.PasskeyAttempt(passkey_response, rp, login_token.encode()),
        )
        if outcome is None:
            # Returned, not raised: the failure counter must commit.
            return _login_page(
                request,
                session,
                context,
                status_code=401,
                error="Wrong username, password, passkey or one-time code.",
                username=username,
            )
        account, keys = outcome
        response = see_other("/")
        clear_login_cookie(request, response, context.settings)
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


def _passkey_section(
    request: Request, principal: Principal, session: DbSession, context: Context
) -> dict[str, object]:
    """The member's passkeys and, when they may add one now, the enrolment options: adding a
    second factor needs the password typed within the step-up window, so a session taken over
    (an unlocked laptop) cannot quietly plant an authenticator of its own."""
    enrolled = passkeys.passkeys_of(session, principal.account_id)
    rp = staff_relying_party(request, context)
    options = None
    if rp is not None and sessions.recently_reauthenticated(principal):
        account = session.get_one(StaffAccount, principal.account_id)
        challenge = passkeys.new_challenge(
            context.secrets.key_integrity_key, passkeys.Ceremony.ENROL, principal.session_id.bytes
        )
        options = passkeys.registration_options(
            rp, account, [p for p in enrolled if p.revoked_at is None], challenge
        )
        allow_page_script(request)
    return {
        "passkeys": [
            {
                "id": p.id,
                "name": p.name,
                "created_at": p.created_at,
                "last_used_at": p.last_used_at,
                "state": "clone suspected"
                if p.clone_suspected_at
                else "revoked"
                if p.revoked_at
                else "in use",
            }
            for p in enrolled
        ],
        "passkeys_available": rp is not None,
        "passkey_options": options,
    }


def _account_page(
    request: Request,
    principal: Principal,
    session: DbSession,
    status_code: int = 200,
    *,
    app_context: Context,
    **context: object,
) -> HTMLResponse:
    return render_staff_page(
        request,
        "staff/account.html",
        principal=principal,
        status_code=status_code,
        **_passkey_section(request, principal, session, app_context),
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
def account_page(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> HTMLResponse:
    notice = {
        "password": "Your password was changed. Your other sessions were ended.",
        "confirmed": "Password confirmed for the next five minutes.",
        "passkey": "Passkey added.",
        "passkey_revoked": "Passkey revoked.",
    }.get(request.query_params.get("done", ""))
    return _account_page(request, principal, session, app_context=context, notice=notice)


@router.post("/account/passkeys", response_class=HTMLResponse)
async def add_passkey_form(
    request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)
    rp = staff_relying_party(request, context)
    try:
        if rp is None:
            raise passkeys.PasskeysUnavailable
        if not sessions.recently_reauthenticated(principal):
            raise StepUpRequired
        passkeys.enrol(
            session,
            session.get_one(StaffAccount, principal.account_id),
            name=fields.get("name", ""),
            response_json=fields.get("passkey_response"),
            rp=rp,
            key_integrity_key=context.secrets.key_integrity_key,
            binding=principal.session_id.bytes,
            actor=principal.actor,
        )
    except AppError as exc:
        return _account_page(
            request, principal, session, exc.status, app_context=context, error=exc.public_message
        )
    return see_other("/account?done=passkey")


@router.post("/account/passkeys/{passkey_id}/revoke", response_class=HTMLResponse)
async def revoke_passkey_form(
    passkey_id: uuid.UUID, request: Request, principal: CurrentStaff, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)
    passkeys.revoke(session, principal.account_id, passkey_id, actor=principal.actor)
    return see_other("/account?done=passkey_revoked")


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
            return _account_page(
                request, principal, session, exc.status, app_context=context, error=exc.public_message
            )
        if not changed:
            return _account_page(
                request,
                principal,
                session,
                403,
                app_context=context,
                error="Your current password did not match.",
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
        return _account_page(
            request, principal, session, 403, app_context=context, error="Your password did not match."
        )
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
    session: DbSession,
    status_code: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    heading, button = LINK_PAGES[opened.link.purpose]
    enrols_second_factor = opened.link.purpose is not LinkPurpose.PASSWORD_RESET
    rp = staff_relying_party(request, context) if enrols_second_factor else None
    policy = current_policy(session)
    # With passkeys mandatory and no TOTP fallback, a code set up here could never log in.
    offers_totp = enrols_second_factor and (
        not policy.passkeys_required or policy.totp_fallback or rp is None
    )
    secret = accounts.enrolment_secret(opened, context.secrets) if offers_totp else None
    options, ceremony = None, None
    if rp is not None:
        challenge = passkeys.new_challenge(
            context.secrets.key_integrity_key, passkeys.Ceremony.ENROL, opened.link.token_hash
        )
        options, ceremony = passkeys.registration_options(rp, opened.account, [], challenge), "create"
    elif opened.link.purpose is LinkPurpose.PASSWORD_RESET and passkeys.has_usable_passkey(
        session, opened.account.id, context.secrets.key_integrity_key
    ):
        # A new password is proved with the member's passkey (or their code): never with the
        # link alone, which the admin who issued it has seen.
        login_rp = staff_relying_party(request, context)
        if login_rp is not None:
            challenge = passkeys.new_challenge(
                context.secrets.key_integrity_key, passkeys.Ceremony.LOGIN, opened.link.token_hash
            )
            options, ceremony = passkeys.authentication_options(login_rp, challenge), "get"
    if options is not None:
        allow_page_script(request)
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
        passkey_options=options,
        passkey_ceremony=ceremony,
        passkey_only=enrols_second_factor and not offers_totp,
        has_totp=opened.account.totp_secret_encrypted is not None,
    )


@router.get("/link/{token}", response_class=HTMLResponse)
def link_page(token: str, request: Request, session: DbSession, context: Context) -> HTMLResponse:
    return _link_page(request, token, accounts.open_link(session, token), context, session)


class PasskeyNeeded(AppError):
    status = 422
    code = "passkey_required"
    public_message = 'This organisation requires a passkey: use "Set up a passkey".'


@router.post("/link/{token}", response_class=HTMLResponse)
async def link_form(token: str, request: Request, session: DbSession, context: Context) -> Response:
    fields = await read_form(request, context.settings)
    rp = staff_relying_party(request, context)
    passkey_response = fields.get("passkey_response") or None

    def complete() -> Response:
        opened = accounts.open_link(session, token)

        def enrol_passkey(account: StaffAccount) -> StaffPasskey:
            if rp is None:
                raise passkeys.PasskeysUnavailable
            return passkeys.enrol(
                session,
                account,
                name=fields.get("passkey_name", "") or "first passkey",
                response_json=passkey_response,
                rp=rp,
                key_integrity_key=context.secrets.key_integrity_key,
                binding=opened.link.token_hash,
                actor=account_actor(account),
            )

        def prove_passkey(account: StaffAccount) -> bool:
            outcome = (
                None
                if rp is None
                else passkeys.check_assertion(
                    session,
                    account,
                    passkeys.parse_response(passkey_response),
                    rp=rp,
                    key_integrity_key=context.secrets.key_integrity_key,
                    binding=opened.link.token_hash,
                )
            )
            return outcome is passkeys.AssertionOutcome.ACCEPTED

        policy = current_policy(session)
        try:
            if (
                passkey_response is None
                and opened.link.purpose is not LinkPurpose.PASSWORD_RESET
                and policy.passkeys_required
                and not policy.totp_fallback
            ):
                raise PasskeyNeeded
            accounts.complete_link(
                session,
                opened,
                otp=fields.get("otp", "")[:16],
                new_password=fields.get("new_password"),
                current_password=fields.get("current_password"),
                settings=context.settings,
                server_secrets=context.secrets,
                enrol_passkey=enrol_passkey if passkey_response is not None else None,
                prove_passkey=prove_passkey if passkey_response is not None else None,
            )
        except AppError as exc:
            # The link stays usable; the page says what to fix. (The failed
            # code check may have advanced nothing: rollback is not needed.)
            return _link_page(request, token, opened, context, session, exc.status, exc.public_message)
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


def _login_policy_page(
    request: Request, admin: Principal, session: DbSession, context: Context, *, status_code: int = 200
) -> HTMLResponse:
    members = [a for a in accounts.list_accounts(session) if a.is_active and a.login_verifier is not None]
    key = context.secrets.key_integrity_key
    return render_staff_page(
        request,
        "staff/login_policy.html",
        principal=admin,
        status_code=status_code,
        policy=current_policy(session),
        members=len(members),
        with_passkey=sum(passkeys.has_usable_passkey(session, a.id, key) for a in members),
    )


@router.get("/admin/login-policy", response_class=HTMLResponse)
def login_policy_page(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> HTMLResponse:
    return _login_policy_page(request, admin, session, context)


@router.post("/admin/login-policy", response_class=HTMLResponse)
async def login_policy_form(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=admin.csrf_token)
    set_policy(
        session,
        LoginPolicy(
            passkeys_required=fields.get("passkeys_required") == "true",
            totp_fallback=fields.get("totp_fallback") == "true",
        ),
        actor=admin.actor,
    )
    return see_other("/admin/login-policy")


def _review_policy_page(
    request: Request,
    admin: Principal,
    session: DbSession,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    policy = current_review_policy(session)
    return render_staff_page(
        request,
        "staff/review_policy.html",
        principal=admin,
        status_code=status_code,
        error=error,
        policy=policy.second_person.value,
        warning=single_lead_warning(session, policy),
    )


@router.get("/admin/review-policy", response_class=HTMLResponse)
def review_policy_page(request: Request, admin: AccountAdmin, session: DbSession) -> HTMLResponse:
    return _review_policy_page(request, admin, session)


@router.post("/admin/review-policy", response_class=HTMLResponse)
async def review_policy_form(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=admin.csrf_token)

    def save() -> Response:
        try:
            second_person = SecondPerson(fields.get("second_person", ""))
        except ValueError:
            return _review_policy_page(
                request, admin, session, error="Choose who may confirm.", status_code=422
            )
        set_review_policy(session, ReviewPolicy(second_person), actor=admin.actor)
        return see_other("/admin/review-policy")

    return await run_in_threadpool(save)
