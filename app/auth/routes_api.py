from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.auth import service
from app.auth.deps import CurrentStaff, clear_session_cookie, set_session_cookie
from app.auth.schemas import LoginRequest, SessionInfo
from app.errors import error_body
from app.web.context import Context, DbSession
from app.web.request_body import read_json

router = APIRouter(prefix="/api/v1/auth")

INVALID_LOGIN = error_body("invalid_credentials", "Wrong username, password or one-time code.")


@router.post("/login", response_model=SessionInfo)
async def login(request: Request, session: DbSession, context: Context) -> Response:
    body = await read_json(request, LoginRequest, context.settings)

    def authenticate() -> Response:
        outcome = service.authenticate(
            session, username=body.username, password=body.password, otp=body.otp,
            settings=context.settings, totp_key=context.secrets.totp_key,
        )
        if outcome is None:
            # Returned, not raised: the failure counter must commit.
            return JSONResponse(INVALID_LOGIN, status_code=401)
        account, keys = outcome
        cookie_value = service.start_session(session, account, keys)
        response = JSONResponse(SessionInfo(username=account.username, role=account.role,
                                            holds_intake_key=bool(keys.intake)).model_dump())
        set_session_cookie(request, response, context.settings, cookie_value)
        return response

    return await run_in_threadpool(authenticate)


@router.post("/logout", status_code=204)
def logout(request: Request, principal: CurrentStaff, session: DbSession, context: Context) -> Response:
    service.end_session(session, principal.session_id)
    response = Response(status_code=204)
    clear_session_cookie(request, response, context.settings)
    return response


@router.get("/session", response_model=SessionInfo)
def whoami(principal: CurrentStaff) -> SessionInfo:
    return SessionInfo(username=principal.username, role=principal.role,
                       holds_intake_key=bool(principal.keys.intake))
