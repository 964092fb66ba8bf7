"""The auditor's pages: browse and filter events, verify the log, see the latest checkpoint."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.audit.routes_api import checkpoint_view, event_view, filtered_events, verify_now
from app.audit_log import events as audit
from app.audit_log import service
from app.audit_log.verification import VerifyReport
from app.auth.deps import Auditor
from app.kit.errors import NotFound
from app.web.context import Context, DbSession
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
    report: VerifyReport | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        checkpoint = checkpoint_view(session, context)
    except NotFound:
        checkpoint = None
    events = session.scalars(filtered_events(**filters).limit(PAGE_SIZE))
    return render_staff_page(
        request,
        "staff/audit.html",
        principal=auditor,
        status_code=status_code,
        events=[event_view(event) for event in events],
        filters=filters,
        checkpoint=checkpoint,
        report=None
        if report is None
        else {
            "ok": report.ok,
            "size": report.size,
            "root": report.root.hex(),
            "checkpoints_checked": report.checkpoints_checked,
            "problems": report.problems,
            "first_bad_seq": report.first_bad_seq,
        },
    )


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
    report = verify_now(session, context, auditor)
    return _audit_page(request, auditor, session, context, NO_FILTERS, report)


@router.post("/audit/checkpoint", response_class=HTMLResponse)
async def checkpoint_form(
    request: Request, auditor: Auditor, session: DbSession, context: Context
) -> HTMLResponse:
    await read_form(request, context.settings, csrf_token=auditor.csrf_token)
    audit.record(session, auditor.actor, "audit.checkpoint")
    service.write_checkpoint(session, service.signing_key(context.secrets), context.settings.audit_log_origin)
    return _audit_page(request, auditor, session, context, NO_FILTERS)
