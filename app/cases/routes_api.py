"""Cases over the staff API. The scoped queries decide what exists for the caller (404 otherwise)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.auth.deps import CaseWorker
from app.cases import reading, service
from app.cases import station_links as links
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
from app.kit.errors import IntegrityFailure, error_responses
from app.web.context import Context, DbSession
from app.web.json_body import JsonBody

router = APIRouter(prefix="/api/v1/cases", responses=error_responses(401, 403, 404, 409, 500, 503, 507))


@router.get("", response_model=list[CaseSummary])
def list_cases(principal: CaseWorker, session: DbSession) -> list[CaseSummary]:
    try:
        return reading.list_cases(session, principal)
    except DecryptionError:
        raise IntegrityFailure from None


@router.post("", response_model=CaseDetail, status_code=201)
def create_case(
    principal: CaseWorker, session: DbSession, context: Context, body: JsonBody[CaseCreate]
) -> CaseDetail:
    case = service.create_case(session, principal, body, context.secrets)
    return reading.read_case(session, principal, case.id)


@router.get("/{case_id}", response_model=CaseDetail)
def read_case(case_id: uuid.UUID, principal: CaseWorker, session: DbSession) -> CaseDetail:
    try:
        return reading.read_case(session, principal, case_id)
    except DecryptionError:
        raise IntegrityFailure from None


@router.post("/{case_id}/stations", response_model=StationLinkView, status_code=201)
def propose_station_link(
    case_id: uuid.UUID, principal: CaseWorker, session: DbSession, body: JsonBody[StationLinkCreate]
) -> StationLinkView:
    link = links.propose_link(
        session, principal, case_id, body.station_id, body.relation, body.confidence, body.evidence
    )
    return next(
        view for view in reading.read_case(session, principal, case_id).station_links if view.id == link.id
    )


@router.post("/{case_id}/stations/{link_id}/confirm", status_code=204)
def confirm_station_link(
    case_id: uuid.UUID, link_id: uuid.UUID, principal: CaseWorker, session: DbSession
) -> Response:
    """Who may confirm is the organisation's review policy: the service decides (403/409)."""
    links.confirm_link(session, principal, case_id, link_id)
    return Response(status_code=204)


@router.post("/{case_id}/tips", status_code=204)
def add_tip(
    case_id: uuid.UUID, principal: CaseWorker, session: DbSession, body: JsonBody[CaseTipAdd]
) -> Response:
    service.add_tip(session, principal, case_id, body.tip_id)
    return Response(status_code=204)


@router.post("/{case_id}/members", status_code=204)
def add_member(
    case_id: uuid.UUID, principal: CaseWorker, session: DbSession, body: JsonBody[CaseMemberAdd]
) -> Response:
    service.add_member(session, principal, case_id, body.account_id)
    return Response(status_code=204)


@router.delete("/{case_id}/members/{account_id}", status_code=204)
def remove_member(
    case_id: uuid.UUID, account_id: uuid.UUID, principal: CaseWorker, session: DbSession
) -> Response:
    service.remove_member(session, principal, case_id, account_id)
    return Response(status_code=204)


@router.post("/{case_id}/status", status_code=204)
def change_status(
    case_id: uuid.UUID, principal: CaseWorker, session: DbSession, body: JsonBody[CaseStatusChange]
) -> Response:
    service.change_status(session, principal, case_id, body.status, body.resolution_note)
    return Response(status_code=204)


@router.post("/{case_id}/restriction", status_code=204)
def set_restriction(
    case_id: uuid.UUID, principal: CaseWorker, session: DbSession, body: JsonBody[CaseRestriction]
) -> Response:
    service.set_restricted(session, principal, case_id, body.restricted)
    return Response(status_code=204)


@router.post("/{case_id}/notes", response_model=CaseNoteView, status_code=201)
def add_note(
    case_id: uuid.UUID, principal: CaseWorker, session: DbSession, body: JsonBody[CaseNoteCreate]
) -> CaseNoteView:
    note = service.add_note(session, principal, case_id, body.body)
    return CaseNoteView(id=note.id, author=principal.username, written_on=note.written_on, body=body.body)
