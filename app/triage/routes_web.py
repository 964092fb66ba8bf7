"""The queue and report pages of the staff UI: plain forms, no script, every rule in the services."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.deps import CurrentStaff, QueueReader, Triager
from app.auth.models import StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES, Permission
from app.auth.principal import Principal
from app.crypto.errors import DecryptionError
from app.custody.models import IntakeKeyGrant
from app.intake.models import RejectionReason, Tip, TipStatus
from app.kit.errors import AppError, IntegrityFailure, InvalidInput, NotFound
from app.kit.taxonomy import Tactic
from app.triage import reading, service, workflow
from app.triage.schemas import QueueFilters
from app.web.context import Context, DbSession
from app.web.forms import read_form
from app.web.pages import render_staff_page

router = APIRouter()

TIP_ACTIONS = ("claim", "release", "assign", "message", "propose", "confirm", "reject", "note")
NOTE_AND_MESSAGE_MAX = 20_000


def _filters_from(request: Request) -> tuple[QueueFilters, str | None]:
    """The queue's filters from the page's GET form: empty fields mean "any"."""
    given = {name: value for name, value in request.query_params.items() if value != ""}
    try:
        return QueueFilters.model_validate(given), None
    except ValidationError:
        return QueueFilters(), "Those filters were not understood; showing the whole queue."


@router.get("/tips", response_class=HTMLResponse)
def queue_page(request: Request, principal: QueueReader, session: DbSession) -> HTMLResponse:
    filters, error = _filters_from(request)
    page = service.list_queue(session, principal, filters)
    base = {name: value for name, value in request.query_params.items() if value != "" and name != "cursor"}
    return render_staff_page(
        request,
        "staff/queue.html",
        principal=principal,
        page=page,
        filters=filters,
        query=base,
        statuses=[status.value for status in TipStatus],
        tactics=[tactic.value for tactic in Tactic],
        holds_key=bool(principal.keys.intake),
        error=error,
        status_code=422 if error else 200,
    )


def _assignable(session: Session, version: int) -> list[StaffAccount]:
    return list(
        session.scalars(
            select(StaffAccount)
            .join(IntakeKeyGrant, IntakeKeyGrant.account_id == StaffAccount.id)
            .where(
                IntakeKeyGrant.key_version == version,
                StaffAccount.is_active.is_(True),
                StaffAccount.role.in_(list(KEY_HOLDING_ROLES)),
            )
            .order_by(StaffAccount.username)
        )
    )


def _tip_page(
    request: Request,
    principal: Principal,
    session: Session,
    tip_id: uuid.UUID,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        tip = reading.read_tip(
            session, principal, tip_id, integrity_key=request.app.state.context.secrets.key_integrity_key
        )
        duplicates = reading.duplicate_candidates(session, principal, tip_id)
    except DecryptionError:
        raise IntegrityFailure from None
    # The row read_tip loaded (no second unwrap of its data key).
    version = session.get_one(Tip, tip_id).intake_key_version
    return render_staff_page(
        request,
        "staff/tip.html",
        principal=principal,
        tip=tip,
        duplicates=duplicates,
        error=error,
        status_code=status_code,
        is_lead=principal.can(Permission.LEAD_TRIAGE),
        can_triage=principal.can(Permission.TRIAGE_TIPS),
        assignable=_assignable(session, version) if principal.can(Permission.LEAD_TRIAGE) else [],
        reasons=[reason.value for reason in RejectionReason],
    )


@router.get("/tips/{tip_id}", response_class=HTMLResponse)
def tip_page(
    tip_id: uuid.UUID, request: Request, principal: CurrentStaff, session: DbSession
) -> HTMLResponse:
    return _tip_page(request, principal, session, tip_id)


def _uuid_field(fields: dict[str, str], name: str) -> uuid.UUID | None:
    value = fields.get(name, "").strip()
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(f"The {name.replace('_', ' ')} is not valid.") from None


def _text_field(fields: dict[str, str], name: str, what: str) -> str:
    value = fields.get(name, "").strip()
    if not value or len(value) > NOTE_AND_MESSAGE_MAX:
        raise InvalidInput(f"Write the {what} (up to 20,000 characters).")
    return value


def _run_tip_action(
    session: Session,
    principal: Principal,
    context: Context,
    tip_id: uuid.UUID,
    action: str,
    fields: dict[str, str],
) -> None:
    if action == "claim":
        workflow.claim(session, principal, tip_id)
    elif action == "release":
        workflow.release(session, principal, tip_id)
    elif action == "assign":
        assignee = _uuid_field(fields, "assignee_id")
        if assignee is None:
            raise InvalidInput("Choose whom to assign the report to.")
        workflow.assign(session, principal, tip_id, assignee)
    elif action == "message":
        workflow.send_message(
            session,
            principal,
            tip_id,
            _text_field(fields, "body", "message"),
            question=fields.get("question") == "yes",
            server_secrets=context.secrets,
        )
    elif action == "propose":
        workflow.propose_verification(session, principal, tip_id)
    elif action == "confirm":
        workflow.confirm_verification(session, principal, tip_id)
    elif action == "reject":
        try:
            reason = RejectionReason(fields.get("reason", ""))
        except ValueError:
            raise InvalidInput("Choose a reason for rejecting the report.") from None
        workflow.reject(session, principal, tip_id, reason, _uuid_field(fields, "duplicate_of"))
    elif action == "note":
        _, data_key = reading.open_tip(session, principal, tip_id)
        workflow.add_note(session, principal, tip_id, _text_field(fields, "body", "note"), data_key)
    else:
        raise NotFound


@router.post("/tips/{tip_id}/{action}", response_class=HTMLResponse)
async def tip_action(
    tip_id: uuid.UUID, action: str, request: Request, principal: Triager, session: DbSession, context: Context
) -> Response:
    """One workflow step from the tip page; a refused step shows the page again with the reason."""
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def act() -> Response:
        try:
            with session.begin_nested():  # a refused step leaves nothing half-done
                _run_tip_action(session, principal, context, tip_id, action, fields)
        except NotFound:
            raise
        except DecryptionError:
            raise IntegrityFailure from None
        except AppError as exc:
            return _tip_page(
                request, principal, session, tip_id, error=exc.public_message, status_code=exc.status
            )
        return RedirectResponse(f"/tips/{tip_id}", status_code=303)

    return await run_in_threadpool(act)
