"""The case pages of the staff UI: plain forms, every rule in app.cases.service."""

from __future__ import annotations

import hmac
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.deps import CaseWorker
from app.auth.models import StaffAccount
from app.auth.permissions import KEY_HOLDING_ROLES
from app.auth.principal import Principal
from app.auth.review_policy import current_review_policy
from app.cases import reading, service
from app.cases import station_links as links
from app.cases.models import CaseStatus
from app.cases.schemas import CaseCreate
from app.crypto.errors import DecryptionError
from app.custody.models import IntakeKeyGrant
from app.kit.errors import AppError, IntegrityFailure, InvalidInput, NotFound
from app.kit.taxonomy import Tactic
from app.labels import service as label_service
from app.labels.models import CaseLabel
from app.stations.models import Confidence, LinkRelation, Station
from app.web.context import Context, DbSession
from app.web.forms import StaleForm, read_form, read_form_values
from app.web.pages import render_staff_page

router = APIRouter()


@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, principal: CaseWorker, session: DbSession) -> HTMLResponse:
    try:
        cases = reading.list_cases(session, principal)
    except DecryptionError:
        raise IntegrityFailure from None
    return render_staff_page(request, "staff/cases.html", principal=principal, cases=cases)


def _new_case_page(
    request: Request,
    principal: Principal,
    session: Session,
    *,
    chosen: set[str],
    error: str | None = None,
    status_code: int = 200,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    verified = reading.verified_tips_to_group(session, principal)
    return render_staff_page(
        request,
        "staff/case_new.html",
        principal=principal,
        tips=verified,
        chosen=chosen,
        tactics=[tactic.value for tactic in Tactic],
        error=error,
        status_code=status_code,
        typed=typed or {},
    )


@router.get("/cases/new", response_class=HTMLResponse)
def new_case_page(request: Request, principal: CaseWorker, session: DbSession) -> HTMLResponse:
    return _new_case_page(request, principal, session, chosen=set(request.query_params.getlist("tip")))


@router.post("/cases", response_class=HTMLResponse)
async def create_case(
    request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    fields = await read_form_values(request, context.settings)
    if not hmac.compare_digest(fields.get("csrf_token", [""])[0].encode(), principal.csrf_token.encode()):
        raise StaleForm
    first = {name: values[0] for name, values in fields.items() if values}

    def create() -> Response:
        try:
            request_body = CaseCreate.model_validate(
                {
                    "title": first.get("title", ""),
                    "summary": first.get("summary", ""),
                    "tip_ids": fields.get("tip_ids", []),
                    "tactics": fields.get("tactics", []),
                    "host_country": first.get("host_country") or None,
                    "restricted": first.get("restricted") == "yes",
                }
            )
        except ValidationError:
            return _new_case_page(
                request,
                principal,
                session,
                chosen=set(fields.get("tip_ids", [])),
                error="Give the case a title and choose at least one verified report.",
                status_code=422,
                typed=first,
            )
        try:
            with session.begin_nested():
                case = service.create_case(session, principal, request_body, context.secrets)
        except AppError as exc:
            return _new_case_page(
                request,
                principal,
                session,
                chosen=set(fields.get("tip_ids", [])),
                error=exc.public_message,
                status_code=exc.status,
                typed=first,
            )
        return RedirectResponse(f"/cases/{case.id}", status_code=303)

    return await run_in_threadpool(create)


def _case_page(
    request: Request,
    principal: Principal,
    session: Session,
    case_id: uuid.UUID,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        case = reading.read_case(session, principal, case_id)
    except DecryptionError:
        raise IntegrityFailure from None
    candidates = list(
        session.scalars(
            select(StaffAccount)
            .join(IntakeKeyGrant, IntakeKeyGrant.account_id == StaffAccount.id)
            .where(StaffAccount.is_active.is_(True), StaffAccount.role.in_(list(KEY_HOLDING_ROLES)))
            .distinct()
            .order_by(StaffAccount.username)
        )
    )
    members = set(case.members)
    policy = current_review_policy(session)
    try:
        # The case was found by the scoped query above; its labels are read like its title.
        case_labels = label_service.views_of(
            session,
            principal,
            list(session.scalars(select(CaseLabel.label_id).where(CaseLabel.case_id == case.id))),
        )
        offered_labels = label_service.label_views(session, principal, include_retired=False)
    except DecryptionError:
        raise IntegrityFailure from None
    attached = {label.id for label in case_labels}
    return render_staff_page(
        request,
        "staff/case.html",
        principal=principal,
        case=case,
        error=error,
        status_code=status_code,
        next_statuses=[status.value for status in service.NEXT_STATUSES[CaseStatus(case.status)]],
        addable=[account for account in candidates if account.username not in members],
        member_accounts=[account for account in candidates if account.username in members],
        station_links=case.station_links,
        stations=list(session.scalars(select(Station).order_by(Station.country, Station.city_key))),
        relations=[relation.value for relation in LinkRelation],
        confidences=[confidence.value for confidence in Confidence],
        # A button only where confirm_link would accept this member (the same rule).
        confirmable_links=links.links_confirmable_by(session, principal, case_id, policy),
        second_person=policy.second_person_noun,
        case_labels=case_labels,
        offered_labels=[label for label in offered_labels if label.id not in attached],
    )


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession
) -> HTMLResponse:
    return _case_page(request, principal, session, case_id)


def _account(fields: dict[str, str]) -> uuid.UUID:
    try:
        return uuid.UUID(fields.get("account_id", ""))
    except ValueError:
        raise InvalidInput("Choose a member.") from None


def _run_case_action(
    session: Session, principal: Principal, case_id: uuid.UUID, action: str, fields: dict[str, str]
) -> None:
    if action == "status":
        try:
            status = CaseStatus(fields.get("status", ""))
        except ValueError:
            raise InvalidInput("Choose a status.") from None
        service.change_status(
            session, principal, case_id, status, fields.get("resolution_note", "").strip() or None
        )
    elif action == "member_add":
        service.add_member(session, principal, case_id, _account(fields))
    elif action == "member_remove":
        service.remove_member(session, principal, case_id, _account(fields))
    elif action == "restrict":
        service.set_restricted(session, principal, case_id, fields.get("restricted") == "yes")
    elif action == "link":
        try:
            station_id = uuid.UUID(fields.get("station_id", ""))
            relation, confidence = (
                LinkRelation(fields.get("relation", "")),
                Confidence(fields.get("confidence", "")),
            )
        except ValueError:
            raise InvalidInput("Choose a station, a relation and a confidence.") from None
        links.propose_link(
            session,
            principal,
            case_id,
            station_id,
            relation,
            confidence,
            fields.get("evidence", "").strip()[:20_000],
        )
    elif action == "link_confirm":
        try:
            link_id = uuid.UUID(fields.get("link_id", ""))
        except ValueError:
            raise InvalidInput("Choose a link to confirm.") from None
        links.confirm_link(session, principal, case_id, link_id)
    elif action == "note":
        body = fields.get("body", "").strip()
        if not body or len(body) > 20_000:
            raise InvalidInput("Write the note (up to 20,000 characters).")
        service.add_note(session, principal, case_id, body)
    else:
        raise NotFound


@router.post("/cases/{case_id}/{action}", response_class=HTMLResponse)
async def case_action(
    case_id: uuid.UUID,
    action: str,
    request: Request,
    principal: CaseWorker,
    session: DbSession,
    context: Context,
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def act() -> Response:
        try:
            with session.begin_nested():
                _run_case_action(session, principal, case_id, action, fields)
        except NotFound:
            raise
        except DecryptionError:
            raise IntegrityFailure from None
        except AppError as exc:
            return _case_page(
                request, principal, session, case_id, error=exc.public_message, status_code=exc.status
            )
        if action == "member_remove" and fields.get("account_id") == str(principal.account_id):
            # Leaving a restricted case makes it vanish for the one who left: back to the list.
            return RedirectResponse("/cases", status_code=303)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    return await run_in_threadpool(act)
