"""Labels over the staff UI and API: the labels page (leads create and retire), and putting labels
on reports and cases. Every rule is in app.labels.service and app.triage.labelling.

Included before the tip and case pages' routers: their ``/tips/{tip_id}/{action}`` and
``/cases/{case_id}/{action}`` would otherwise answer ``.../labels``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.deps import CaseWorker, Lead, QueueReader, Triager
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.cases.routes_web import _case_page
from app.crypto.errors import DecryptionError
from app.kit.errors import AppError, IntegrityFailure, InvalidInput, error_responses
from app.labels import service as labels
from app.labels.schemas import LabelAttach, LabelCreate, LabelOut, LabelSummary
from app.triage import labelling
from app.triage.routes_web import _tip_page
from app.web.context import AppContext, Context, DbSession
from app.web.forms import read_form, uuid_field
from app.web.json_body import JsonBody
from app.web.pages import render_staff_page

router = APIRouter()
api_router = APIRouter(prefix="/api/v1", responses=error_responses(401, 403, 404, 409, 422, 500, 503, 507))


# --- Pages ----------------------------------------------------------------------------------------


def _labels_page(
    request: Request,
    principal: Principal,
    session: Session,
    *,
    error: str | None = None,
    status_code: int = 200,
    typed_name: str = "",
) -> HTMLResponse:
    try:
        overview = labelling.label_overview(session, principal)
    except DecryptionError:
        raise IntegrityFailure from None
    return render_staff_page(
        request,
        "staff/labels.html",
        principal=principal,
        labels=overview,
        holds_key=bool(principal.keys.intake),
        is_lead=principal.can(Permission.LEAD_TRIAGE),
        typed_name=typed_name,
        error=error,
        status_code=status_code,
    )


@router.get("/labels", response_class=HTMLResponse)
def labels_page(request: Request, principal: QueueReader, session: DbSession) -> HTMLResponse:
    return _labels_page(request, principal, session)


def _label_field(fields: dict[str, str]) -> uuid.UUID:
    label_id = uuid_field(fields.get("label_id"), "label")
    if label_id is None:
        raise InvalidInput("Choose a label.")
    return label_id


def _step(
    session: Session, change: Callable[[], None], refused: Callable[[AppError], Response], done: str
) -> Response:
    """One change inside a savepoint (a refused one leaves nothing), then back to ``done``; a
    refusal shows the page again with the reason and the refusal's status."""
    try:
        with session.begin_nested():
            change()
    except DecryptionError:
        raise IntegrityFailure from None
    except IntegrityFailure:
        raise
    except AppError as exc:
        return refused(exc)
    return RedirectResponse(done, status_code=303)


@router.post("/labels", response_class=HTMLResponse)
async def create_label_form(
    request: Request, principal: Lead, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)
    name = fields.get("name", "")

    def create() -> None:
        labels.create_label(session, principal, name, context.secrets)

    def act() -> Response:
        return _step(
            session,
            create,
            lambda exc: _labels_page(
                request,
                principal,
                session,
                error=exc.public_message,
                status_code=exc.status,
                typed_name=name[: labels.NAME_MAX_CHARS * 4],
            ),
            "/labels",
        )

    return await run_in_threadpool(act)


@router.post("/labels/{label_id}/retire", response_class=HTMLResponse)
async def retire_label_form(
    label_id: uuid.UUID, request: Request, principal: Lead, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def act() -> Response:
        return _step(
            session,
            lambda: labels.retire_label(session, principal, label_id),
            lambda exc: _labels_page(
                request, principal, session, error=exc.public_message, status_code=exc.status
            ),
            "/labels",
        )

    return await run_in_threadpool(act)


LabelChange = Callable[[Session, Principal, uuid.UUID, uuid.UUID], None]


async def _labels_form(
    request: Request,
    principal: Principal,
    session: Session,
    context: AppContext,
    *,
    owner_id: uuid.UUID,
    add: LabelChange,
    remove: LabelChange,
    page: Callable[..., Response],
    done: str,
) -> Response:
    """Add (``label_id``) or, with ``remove``, take off a label from a report's or a case's page;
    a refusal shows that page again with the reason."""
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def change() -> None:
        label_id = _label_field(fields)
        (remove if fields.get("remove") else add)(session, principal, owner_id, label_id)

    def refused(exc: AppError) -> Response:
        return page(request, principal, session, owner_id, error=exc.public_message, status_code=exc.status)

    return await run_in_threadpool(_step, session, change, refused, done)


@router.post("/tips/{tip_id}/labels", response_class=HTMLResponse)
async def tip_labels_form(
    tip_id: uuid.UUID, request: Request, principal: Triager, session: DbSession, context: Context
) -> Response:
    # A report the caller cannot read is not found again by the page: 404, as everywhere.
    return await _labels_form(
        request,
        principal,
        session,
        context,
        owner_id=tip_id,
        add=labelling.label_tip,
        remove=labelling.unlabel_tip,
        page=_tip_page,
        done=f"/tips/{tip_id}",
    )


@router.post("/cases/{case_id}/labels", response_class=HTMLResponse)
async def case_labels_form(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    return await _labels_form(
        request,
        principal,
        session,
        context,
        owner_id=case_id,
        add=labelling.label_case,
        remove=labelling.unlabel_case,
        page=_case_page,
        done=f"/cases/{case_id}",
    )


# --- API ------------------------------------------------------------------------------------------


@api_router.get("/labels", response_model=list[LabelSummary])
def list_labels(principal: QueueReader, session: DbSession) -> list[LabelSummary]:
    try:
        return labelling.label_overview(session, principal)
    except DecryptionError:
        raise IntegrityFailure from None


@api_router.post("/labels", response_model=LabelOut, status_code=201)
def create_label(
    principal: Lead, session: DbSession, context: Context, body: JsonBody[LabelCreate]
) -> LabelOut:
    try:
        label = labels.create_label(session, principal, body.name, context.secrets)
        return LabelOut(id=label.id, name=labels.label_name(principal, label), retired=False)
    except DecryptionError:
        raise IntegrityFailure from None


@api_router.post("/labels/{label_id}/retire", status_code=204)
def retire_label(label_id: uuid.UUID, principal: Lead, session: DbSession) -> Response:
    labels.retire_label(session, principal, label_id)
    return Response(status_code=204)


@api_router.post("/tips/{tip_id}/labels", status_code=204)
def label_tip(
    tip_id: uuid.UUID, principal: Triager, session: DbSession, body: JsonBody[LabelAttach]
) -> Response:
    labelling.label_tip(session, principal, tip_id, body.label_id)
    return Response(status_code=204)


@api_router.delete("/tips/{tip_id}/labels/{label_id}", status_code=204)
def unlabel_tip(tip_id: uuid.UUID, label_id: uuid.UUID, principal: Triager, session: DbSession) -> Response:
    labelling.unlabel_tip(session, principal, tip_id, label_id)
    return Response(status_code=204)


@api_router.post("/cases/{case_id}/labels", status_code=204)
def label_case(
    case_id: uuid.UUID, principal: CaseWorker, session: DbSession, body: JsonBody[LabelAttach]
) -> Response:
    labelling.label_case(session, principal, case_id, body.label_id)
    return Response(status_code=204)


@api_router.delete("/cases/{case_id}/labels/{label_id}", status_code=204)
def unlabel_case(
    case_id: uuid.UUID, label_id: uuid.UUID, principal: CaseWorker, session: DbSession
) -> Response:
    labelling.unlabel_case(session, principal, case_id, label_id)
    return Response(status_code=204)
