"""The auditor's pages: browse and filter events, verify the log, see the latest checkpoint."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from app.audit.routes_api import (
    assessment_view,
    checkpoint_view,
    event_view,
    filtered_events,
    log_key,
    sign_in_request,
    verify_now,
)
from app.audit.routes_witness import witnesses_view
from app.audit_log import events as audit
from app.audit_log.assessment import LogAssessment
from app.audit_log.checkpoint import verifier_key
from app.audit_log.signer import coverage
from app.audit_log.witnesses import WitnessRegistrationError, register_witness, revoke_witness
from app.auth.deps import AccountAdmin, Auditor
from app.auth.principal import Principal
from app.kit.errors import NotFound
from app.web.context import AppContext, Context, DbSession
from app.web.forms import read_form
from app.web.pages import render_staff_page

router = APIRouter()
PAGE_SIZE = 200


def _audit_page(
    request: Request,
    auditor: Auditor,
    session: DbSession,
    context: Context,
    filters: dict[str, Any],
    assessment: LogAssessment | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        checkpoint = checkpoint_view(session, context)
    except NotFound:
        checkpoint = None
    events = session.scalars(filtered_events(**filters).limit(PAGE_SIZE))
    covered = coverage(session)
    return render_staff_page(
        request,
        "staff/audit.html",
        principal=auditor,
        status_code=status_code,
        events=[event_view(event) for event in events],
        filters=filters,
        checkpoint=checkpoint,
        coverage={
            "events": covered.events,
            "signed_size": covered.signed_size,
            "unsigned": covered.unsigned,
            "oldest_unsigned_at": None
            if covered.oldest_unsigned_at is None
            else audit.format_time(covered.oldest_unsigned_at),
        },
        witnesses=witnesses_view(session, context),
        witnesses_required=context.settings.audit_witnesses_required,
        last_verification=_last_verification(session),
        report=None if assessment is None else assessment_view(assessment),
    )


def _last_verification(session: Session) -> dict[str, Any] | None:
    """The newest recorded verification, by anyone: when, by whom, with what verdict."""
    event = session.scalars(filtered_events(**{**NO_FILTERS, "action": "audit.verify"}).limit(1)).first()
    return None if event is None else event_view(event)


NO_FILTERS: dict[str, Any] = {"actor": None, "action": None, "object_id": None, "since": None, "until": None}


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    auditor: Auditor,
    session: DbSession,
    context: Context,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=10)] = None,
    until: Annotated[str | None, Query(max_length=10)] = None,
) -> HTMLResponse:
    def day(value: str | None) -> dt.date | None:
        try:
            return dt.date.fromisoformat(value) if value else None
        except ValueError:
            return None

    filters = {
        "actor": actor or None,
        "action": action or None,
        "object_id": object_id or None,
        "since": day(since),
        "until": day(until),
    }
    return _audit_page(request, auditor, session, context, filters)


@router.post("/audit/verify", response_class=HTMLResponse)
async def verify_form(
    request: Request, auditor: Auditor, session: DbSession, context: Context
) -> HTMLResponse:
    await read_form(request, context.settings, csrf_token=auditor.csrf_token)
    assessment = verify_now(session, context, auditor)
    return _audit_page(request, auditor, session, context, NO_FILTERS, assessment)


@router.post("/audit/checkpoint", response_class=HTMLResponse)
async def checkpoint_form(
    request: Request, auditor: Auditor, session: DbSession, context: Context
) -> HTMLResponse:
    await read_form(request, context.settings, csrf_token=auditor.csrf_token)
    audit.record(session, auditor.actor, "audit.checkpoint")
    sign_in_request(session, context)
    return _audit_page(request, auditor, session, context, NO_FILTERS)


def _witnesses_page(
    request: Request,
    admin: Principal,
    session: Session,
    context: AppContext,
    *,
    status_code: int = 200,
    issued: dict[str, str] | None = None,
    error: str | None = None,
) -> HTMLResponse:
    return render_staff_page(
        request,
        "staff/witnesses.html",
        principal=admin,
        status_code=status_code,
        witnesses=witnesses_view(session, context),
        witnesses_required=context.settings.audit_witnesses_required,
        log_verifier_key=verifier_key(log_key(context).public_key, context.settings.audit_log_origin),
        issued=issued,
        error=error,
    )


@router.get("/admin/witnesses", response_class=HTMLResponse)
def witnesses_page(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> HTMLResponse:
    return _witnesses_page(request, admin, session, context)


@router.post("/admin/witnesses", response_class=HTMLResponse)
async def add_witness_form(
    request: Request, admin: AccountAdmin, session: DbSession, context: Context
) -> HTMLResponse:
    fields = await read_form(request, context.settings, csrf_token=admin.csrf_token)

    def register() -> HTMLResponse:
        try:
            witness, token = register_witness(
                session,
                verifier_key=fields.get("verifier_key", "")[:300],
                integrity_key=context.secrets.key_integrity_key,
                registered_by=admin.username,
            )
        except WitnessRegistrationError as exc:
            return _witnesses_page(request, admin, session, context, status_code=422, error=str(exc))
        audit.record(session, admin.actor, "audit.witness_add", object_type="witness", object_id=witness.id)
        issued = {"name": witness.name, "token": token}
        return _witnesses_page(request, admin, session, context, status_code=201, issued=issued)

    return await run_in_threadpool(register)


@router.post("/admin/witnesses/{witness_id}/revoke", response_class=HTMLResponse)
async def revoke_witness_form(
    request: Request, witness_id: uuid.UUID, admin: AccountAdmin, session: DbSession, context: Context
) -> HTMLResponse:
    await read_form(request, context.settings, csrf_token=admin.csrf_token)
    if revoke_witness(session, witness_id) is None:
        raise NotFound("No such witness.")
    audit.record(session, admin.actor, "audit.witness_revoke", object_type="witness", object_id=witness_id)
    return _witnesses_page(request, admin, session, context)
