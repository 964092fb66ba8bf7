"""Cases over the staff API. The scoped queries decide what exists for the caller (404 otherwise)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.auth.deps import CaseWorker, StationManager
from app.cases import service
from app.cases.schemas import (
    CaseCreate,
    CaseDetail,
    CaseMemberAdd,
    CaseNoteCreate,
    CaseNoteView,
    CaseRestriction,
    CaseStatusChange,
    CaseSummary,
    CaseTipAdd,
    StationLinkCreate,
    StationLinkView,
)
from app.crypto.errors import DecryptionError
from app.kit.errors import IntegrityFailure
from app.stations import links
from app.web.context import Context, DbSession
from app.web.request_body import read_json

router = APIRouter(prefix="/api/v1/cases")


@router.get("", response_model=list[CaseSummary])
def list_cases(principal: CaseWorker, session: DbSession) -> list[CaseSummary]:
    try:
        return service.list_cases(session, principal)
    except DecryptionError:
        raise IntegrityFailure from None


@router.post("", response_model=CaseDetail, status_code=201)
async def create_case(
    request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> CaseDetail:
    body = await read_json(request, CaseCreate, context.settings)

    def create() -> CaseDetail:
        case = service.create_case(session, principal, body, context.secrets)
        return service.read_case(session, principal, case.id)

    return await run_in_threadpool(create)


@router.get("/{case_id}", response_model=CaseDetail)
def read_case(case_id: uuid.UUID, principal: CaseWorker, session: DbSession) -> CaseDetail:
    try:
        return service.read_case(session, principal, case_id)
    except DecryptionError:
        raise IntegrityFailure from None


@router.post("/{case_id}/stations", response_model=StationLinkView, status_code=201)
async def propose_station_link(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> StationLinkView:
    body = await read_json(request, StationLinkCreate, context.settings)

    def propose() -> StationLinkView:
        link = links.propose_link(
            session, principal, case_id, body.station_id, body.relation, body.confidence, body.evidence
        )
        return next(
            view
            for view in service.read_case(session, principal, case_id).station_links
            if view.id == link.id
        )

    return await run_in_threadpool(propose)


@router.post("/{case_id}/stations/{link_id}/confirm", status_code=204)
def confirm_station_link(
    case_id: uuid.UUID, link_id: uuid.UUID, principal: StationManager, session: DbSession
) -> Response:
    links.confirm_link(session, principal, case_id, link_id)
    return Response(status_code=204)


@router.post("/{case_id}/tips", status_code=204)
async def add_tip(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    body = await read_json(request, CaseTipAdd, context.settings)
    await run_in_threadpool(service.add_tip, session, principal, case_id, body.tip_id)
    return Response(status_code=204)


@router.post("/{case_id}/members", status_code=204)
async def add_member(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    body = await read_json(request, CaseMemberAdd, context.settings)
    await run_in_threadpool(service.add_member, session, principal, case_id, body.account_id)
    return Response(status_code=204)


@router.delete("/{case_id}/members/{account_id}", status_code=204)
def remove_member(
    case_id: uuid.UUID, account_id: uuid.UUID, principal: CaseWorker, session: DbSession
) -> Response:
    service.remove_member(session, principal, case_id, account_id)
    return Response(status_code=204)


@router.post("/{case_id}/status", status_code=204)
async def change_status(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    body = await read_json(request, CaseStatusChange, context.settings)
    await run_in_threadpool(
        service.change_status, session, principal, case_id, body.status, body.resolution_note
    )
    return Response(status_code=204)


@router.post("/{case_id}/restriction", status_code=204)
async def set_restriction(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    body = await read_json(request, CaseRestriction, context.settings)
    await run_in_threadpool(service.set_restricted, session, principal, case_id, body.restricted)
    return Response(status_code=204)


@router.post("/{case_id}/notes", response_model=CaseNoteView, status_code=201)
async def add_note(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> CaseNoteView:
    body = await read_json(request, CaseNoteCreate, context.settings)
    note = await run_in_threadpool(service.add_note, session, principal, case_id, body.body)
    return CaseNoteView(id=note.id, author=principal.username, written_on=note.written_on, body=body.body)
