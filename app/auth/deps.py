"""Who is calling the staff app, and may they: the dependencies every staff route uses."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response

from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.auth.sessions import ExpiredSession, end_session, recently_reauthenticated, resume_session
from app.kit.config import Settings
from app.kit.errors import Forbidden, Unauthenticated
from app.web.context import Context, DbSession

SECURE_COOKIE_NAME = "__Host-daylight_session"
# Only for development on loopback over plain http, where browsers and HTTP
# clients would drop a Secure cookie; a __Host- cookie must be Secure.
LOOPBACK_COOKIE_NAME = "daylight_session"


def _served_on_loopback(request: Request) -> bool:
    server = request.scope.get("server")
    if not server:
        return False
    host = str(server[0])
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def session_cookie(request: Request, settings: Settings) -> tuple[str, bool]:
    """The cookie name and Secure flag for this request.

    Plain http is allowed only in development, only on a socket bound to a
    loopback address (decided from the listening socket, never from a
    proxy header), and only under a name without the __Host- prefix.
    """
    if settings.is_development and request.url.scheme == "http" and _served_on_loopback(request):
        return LOOPBACK_COOKIE_NAME, False
    return SECURE_COOKIE_NAME, True


def set_session_cookie(request: Request, response: Response, settings: Settings, value: str) -> None:
    name, secure = session_cookie(request, settings)
    response.set_cookie(
        name,
        value,
        max_age=settings.session_absolute_hours * 3600,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(request: Request, response: Response, settings: Settings) -> None:
    name, secure = session_cookie(request, settings)
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")


# The pre-login cookie: it ties the login form's CSRF token and its passkey challenge to the
# browser that loaded the form. Short-lived; cleared at login.
SECURE_LOGIN_COOKIE_NAME = "__Host-daylight_login"
LOOPBACK_LOGIN_COOKIE_NAME = "daylight_login"
LOGIN_COOKIE_SECONDS = 15 * 60


def login_cookie_name(request: Request, settings: Settings) -> tuple[str, bool]:
    _, secure = session_cookie(request, settings)
    return (SECURE_LOGIN_COOKIE_NAME if secure else LOOPBACK_LOGIN_COOKIE_NAME), secure


def set_login_cookie(request: Request, response: Response, settings: Settings, value: str) -> None:
    name, secure = login_cookie_name(request, settings)
    response.set_cookie(
        name, value, max_age=LOGIN_COOKIE_SECONDS, path="/", secure=secure, httponly=True, samesite="strict"
    )


def clear_login_cookie(request: Request, response: Response, settings: Settings) -> None:
    name, secure = login_cookie_name(request, settings)
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="strict")


def request_origin_on_loopback(request: Request, settings: Settings) -> str | None:
    """The request's own origin, only in development on a loopback socket (where passkeys may
    be tried without DAYLIGHT_STAFF_ORIGIN); None elsewhere."""
    if not (settings.is_development and _served_on_loopback(request)):
        return None
    host = request.headers.get("host")
    return f"{request.url.scheme}://{host}" if host else None


def current_principal(request: Request, session: DbSession, context: Context) -> Principal:
    """The authenticated member, or 401. Every guarded staff route depends on this."""
    name, _ = session_cookie(request, context.settings)
    cookie_value = request.cookies.get(name)
    outcome = (
        resume_session(
            session, cookie_value, context.settings, integrity_key=context.secrets.key_integrity_key
        )
        if cookie_value
        else None
    )
    if isinstance(outcome, ExpiredSession):
        # Committed here, the one place a dependency commits: the 401 below
        # rolls the request's transaction back, and the unlocked keys must not
        # outlive the session. (A second transaction would wait on this one's
        # SQLite write lock.)
        end_session(session, outcome.session_id)
        session.commit()
    if not isinstance(outcome, Principal):
        raise Unauthenticated
    return outcome


CurrentStaff = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that lets through only members whose role holds ``permission``."""

    # async: no worker-thread hop for a check that does no I/O (see app.web.context.app_context).
    async def guard(principal: CurrentStaff) -> Principal:
        if not principal.can(permission):
            raise Forbidden
        return principal

    guard.__name__ = f"require_{permission.value}"
    return guard


# The typed guards staff routes declare (CONVENTIONS 4), one per permission.
QueueReader = Annotated[Principal, Depends(require(Permission.VIEW_QUEUE))]
AccountAdmin = Annotated[Principal, Depends(require(Permission.MANAGE_ACCOUNTS))]
GrantManager = Annotated[Principal, Depends(require(Permission.MANAGE_KEY_GRANTS))]
Triager = Annotated[Principal, Depends(require(Permission.TRIAGE_TIPS))]
Lead = Annotated[Principal, Depends(require(Permission.LEAD_TRIAGE))]
CaseWorker = Annotated[Principal, Depends(require(Permission.WORK_CASES))]
StationManager = Annotated[Principal, Depends(require(Permission.MANAGE_STATIONS))]
Auditor = Annotated[Principal, Depends(require(Permission.READ_AUDIT_LOG))]


class StepUpRequired(Forbidden):
    code = "step_up_required"
    public_message = "Confirm your password first (it is asked again after five minutes)."


async def recently_reauthenticated_staff(principal: CurrentStaff) -> Principal:
    """For key grants, exports and deletions: the password typed within the last five minutes."""
    if not recently_reauthenticated(principal):
        raise StepUpRequired
    return principal


SteppedUpStaff = Annotated[Principal, Depends(recently_reauthenticated_staff)]
