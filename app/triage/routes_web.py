"""The queue and report pages of the staff UI: plain forms, no script, every rule in the services."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.deps import CurrentStaff, Triager
from app.auth.models import StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES, Permission
from app.auth.principal import Principal
from app.auth.review_policy import current_review_policy, may_confirm
from app.crypto.errors import DecryptionError
from app.custody.models import IntakeKeyGrant
from app.intake.models import RejectionReason, Tip
from app.kit.errors import AppError, IntegrityFailure, InvalidInput, NotFound
from app.labels import service as label_service
from app.stations.models import Station
from app.triage import labelling, reading, workflow
from app.web.context import Context, DbSession
from app.web.forms import read_form, uuid_field
from app.web.pages import render_staff_page

router = APIRouter()

TIP_ACTIONS = ("claim", "release", "assign", "message", "propose", "confirm", "reject", "note")
NOTE_AND_MESSAGE_MAX = 20_000


def _station_name(session: Session, station_id: uuid.UUID | str | None) -> str | None:
    if not station_id:
        return None
    try:
        station = session.get(Station, uuid.UUID(str(station_id)))
    except ValueError:
        return None
    return station.described if station else None


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
    row = session.get_one(Tip, tip_id)
    version = row.intake_key_version
    policy = current_review_policy(session)
    try:
        tip_labels = labelling.labels_by_tip(session, principal, [tip_id]).get(tip_id, [])
        offered_labels = (
            label_service.label_views(session, principal, include_retired=False)
            if principal.can(Permission.TRIAGE_TIPS)
            else []
        )
    except DecryptionError:
        raise IntegrityFailure from None
    attached = {label.id for label in tip_labels}
    return render_staff_page(
        request,
        "staff/tip.html",
        principal=principal,
        tip=tip,
        station_name=_station_name(session, tip.station_id),
        duplicates=duplicates,
        error=error,
        status_code=status_code,
        is_lead=principal.can(Permission.LEAD_TRIAGE),
        can_triage=principal.can(Permission.TRIAGE_TIPS),
        # The button only where confirm_verification would accept this member (the same rule).
        can_confirm=row.verification_proposed_by_id is not None
        and may_confirm(policy, principal, row.verification_proposed_by_id),
        second_person=policy.second_person_noun,
        assignable=_assignable(session, version) if principal.can(Permission.LEAD_TRIAGE) else [],
        reasons=[reason.value for reason in RejectionReason],
        tip_labels=tip_labels,
        offered_labels=[label for label in offered_labels if label.id not in attached],
    )


@router.get("/tips/{tip_id}", response_class=HTMLResponse)
def tip_page(
    tip_id: uuid.UUID, request: Request, principal: CurrentStaff, session: DbSession
) -> HTMLResponse:
    return _tip_page(request, principal, session, tip_id)


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
        assignee = uuid_field(fields.get("assignee_id"), "assignee")
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
        workflow.reject(
            session, principal, tip_id, reason, uuid_field(fields.get("duplicate_of"), "duplicate of")
        )
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
