"""The queue and report pages of the staff UI (the triage workflow comes with its own issue)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.auth.deps import CurrentStaff, QueueReader
from app.crypto.errors import DecryptionError
from app.errors import IntegrityFailure
from app.triage import service
from app.web.context import DbSession
from app.web.pages import render_staff_page

router = APIRouter()



@router.get("/tips", response_class=HTMLResponse)
def queue_page(request: Request, principal: QueueReader, session: DbSession) -> HTMLResponse:
    return render_staff_page(
        request,
        "staff/queue.html",
        principal=principal,
        items=service.list_queue(session, principal).items,
        holds_key=bool(principal.keys.intake),
    )


@router.get("/tips/{tip_id}", response_class=HTMLResponse)
def tip_page(
    tip_id: uuid.UUID, request: Request, principal: CurrentStaff, session: DbSession
) -> HTMLResponse:
    try:
        tip = service.read_tip(session, principal, tip_id)
    except DecryptionError:
        raise IntegrityFailure from None
    return render_staff_page(request, "staff/tip.html", principal=principal, tip=tip)
