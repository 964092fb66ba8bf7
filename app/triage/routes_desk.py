"""The caseworker's desk in the staff UI: the queue with its summaries, filters, search, saved
views and bulk steps. Plain GET and POST forms, no script; every rule is in the services."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.deps import QueueReader, Triager
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.auth.review_policy import current_review_policy, single_lead_warning
from app.crypto.errors import DecryptionError
from app.custody.service import current_intake_key
from app.intake.models import TipStatus
from app.kit.clock import today
from app.kit.config import Settings
from app.kit.errors import AppError, IntegrityFailure, InvalidInput
from app.kit.taxonomy import COUNTRY_CODES, Language, Tactic
from app.labels.service import label_views
from app.stations.models import Station
from app.triage import bulk, service, views
from app.triage import clocks as response_clocks
from app.triage.routes_web import _assignable
from app.triage.schemas import QueueFilters, QueueSort, filters_from_query
from app.web.context import Context, DbSession
from app.web.forms import read_form, read_form_lists, uuid_field
from app.web.json_body import JsonBody
from app.web.pages import render_staff_page
from app.web.staff_words import country_words, language_words, tactic_words

OPEN_STATUS_VALUES = frozenset({TipStatus.NEW.value, TipStatus.IN_REVIEW.value, TipStatus.NEEDS_INFO.value})


@dataclass(frozen=True, slots=True)
class ResponseClocks:
    """What the response clocks say of one queue row (app.triage.clocks)."""

    claim_overdue: bool
    answer_overdue: bool
    purge_on: dt.date | None


router = APIRouter()
api_router = APIRouter(prefix="/api/v1/tips")

SORT_WORDS = {
    QueueSort.URGENCY: "urgent first, then oldest",
    QueueSort.OLDEST: "oldest first",
    QueueSort.NEWEST: "newest first",
    QueueSort.ACTIVITY: "latest activity first",
}


def _query_of(request: Request) -> dict[str, str]:
    return {name: value for name, value in request.query_params.items() if value != ""}


def _filters_from(query: dict[str, str]) -> tuple[QueueFilters, str | None]:
    """The queue's filters from the page's GET form: empty fields mean "any"."""
    try:
        return filters_from_query(query), None
    except ValidationError:
        return QueueFilters(), "Those filters were not understood; showing the whole queue."


def _age(day: dt.date | None, warning: int, overdue: int) -> dict[str, object] | None:
    """An age badge: days since ``day``, and whether that is past the settings' thresholds."""
    if day is None:
        return None
    days = max((today() - day).days, 0)
    level = "overdue" if days >= overdue else "ageing" if days >= warning else "fresh"
    return {"days": days, "level": level}


def _station_names(session: Session) -> dict[uuid.UUID, str]:
    stations = session.scalars(select(Station).order_by(Station.country, Station.city))
    return {station.id: station.described for station in stations}


def render_queue(
    request: Request,
    principal: Principal,
    session: Session,
    context: Context,
    query: dict[str, str],
    *,
    saved_views: list[views.SavedViewItem] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    filters, filter_error = _filters_from(query)
    # The page shows each report's summary to a key holder (the API only when asked).
    filters = filters.model_copy(update={"summaries": True})
    integrity_key = context.secrets.key_integrity_key
    try:
        page = service.list_queue(session, principal, filters, integrity_key=integrity_key)
    except DecryptionError:
        raise IntegrityFailure from None
    settings: Settings = context.settings
    intake_key = current_intake_key(session)
    is_lead = principal.can(Permission.LEAD_TRIAGE)
    holds_key = bool(principal.keys.intake)
    if saved_views is None:
        saved_views = views.views_of(session, principal) if holds_key else []
    ages = {
        item.id: (
            _age(item.received_on, settings.queue_age_warning_days, settings.queue_age_overdue_days)
            if item.status in (TipStatus.NEW.value, TipStatus.NEEDS_INFO.value, TipStatus.IN_REVIEW.value)
            else None,
            _age(
                item.submitter_wrote_on,
                settings.submitter_message_warning_days,
                settings.submitter_message_overdue_days,
            )
            if item.submitter_activity
            else None,
        )
        for item in page.items
    }
    day = today()
    clocks = {
        item.id: ResponseClocks(
            claim_overdue=response_clocks.claim_overdue(
                item.status, item.received_on, urgent=item.urgent, settings=settings, today=day
            ),
            answer_overdue=response_clocks.answer_overdue(
                item.submitter_wrote_on,
                unread=item.submitter_activity and item.status in OPEN_STATUS_VALUES,
                settings=settings,
                today=day,
            ),
            purge_on=response_clocks.purge_warning(item.status, item.last_activity_on, settings, day),
        )
        for item in page.items
    }
    return render_staff_page(
        request,
        "staff/queue.html",
        principal=principal,
        page=page,
        filters=filters,
        query={name: value for name, value in query.items() if name not in ("cursor", "view")},
        query_view=query.get("view"),
        statuses=[status.value for status in TipStatus],
        tactics=[(tactic.value, tactic_words(tactic)) for tactic in Tactic],
        languages=[(language.value, language_words(language)) for language in Language],
        countries=sorted(((code, country_words(code)) for code in COUNTRY_CODES), key=lambda pair: pair[1]),
        sorts=[(sort.value, words) for sort, words in SORT_WORDS.items()],
        stations=_station_names(session) if holds_key else {},
        labels=label_views(session, principal, include_retired=False) if holds_key else [],
        saved_views=saved_views,
        assignable=_assignable(session, intake_key.version) if is_lead and intake_key else [],
        ages=ages,
        clocks=clocks,
        holds_key=holds_key,
        is_lead=is_lead,
        can_triage=principal.can(Permission.TRIAGE_TIPS),
        small_team_warning=single_lead_warning(session, current_review_policy(session)) if is_lead else None,
        error=error or filter_error,
        status_code=422 if filter_error and status_code == 200 else status_code,
    )


@router.get("/tips", response_class=HTMLResponse)
def queue_page(
    request: Request, principal: QueueReader, session: DbSession, context: Context
) -> HTMLResponse:
    query = _query_of(request)
    saved = views.views_of(session, principal) if principal.keys.intake else []
    chosen = next((view for view in saved if str(view.id) == query.get("view")), None)
    if chosen is not None:
        query = {**dict(parse_qsl(chosen.query)), "view": str(chosen.id)}
    return render_queue(request, principal, session, context, query, saved_views=saved)


def _bulk_request_from(
    session: Session, principal: Principal, values: dict[str, list[str]]
) -> bulk.BulkRequest:
    first = {name: items[0] for name, items in values.items() if items}
    tip_ids = [uuid_field(value, "report") for value in values.get("tip_id", [])]
    if not tip_ids:
        raise InvalidInput("Tick at least one report.")
    duplicate_of = None
    if first.get("action") == bulk.BulkAction.REJECT_DUPLICATE.value:
        duplicate_of = bulk.tip_id_by_ref(session, principal, first.get("duplicate_of_ref", ""))
        if duplicate_of is None:
            raise InvalidInput("Type the reference of the report they duplicate (as shown in the queue).")
    try:
        return bulk.BulkRequest(
            action=first.get("action", ""),
            tip_ids=[tip_id for tip_id in tip_ids if tip_id is not None],
            assignee_id=uuid_field(first.get("assignee_id"), "assignee"),
            label_id=uuid_field(first.get("label_id"), "label"),
            duplicate_of=duplicate_of,
        )
    except ValidationError:
        raise InvalidInput(f"Choose a step, and at most {bulk.MAX_BULK_REPORTS} reports.") from None


@router.post("/tips/bulk", response_class=HTMLResponse)
async def bulk_form(request: Request, principal: Triager, session: DbSession, context: Context) -> Response:
    """One step on every ticked report, all or nothing; back to the queue the form came from."""
    values = await read_form_lists(request, context.settings, csrf_token=principal.csrf_token)
    # Back to the queue as it was filtered: its query, re-encoded (never echoed as posted).
    back = urlencode(parse_qsl((values.get("back") or [""])[0]))

    def act() -> Response:
        try:
            with session.begin_nested():
                bulk.apply(session, principal, _bulk_request_from(session, principal, values))
        except DecryptionError:
            raise IntegrityFailure from None
        except AppError as exc:
            return render_queue(
                request, principal, session, context, {}, error=exc.public_message, status_code=exc.status
            )
        return RedirectResponse(f"/tips?{back}" if back else "/tips", status_code=303)

    return await run_in_threadpool(act)


@router.post("/views", response_class=HTMLResponse)
async def save_view_form(
    request: Request, principal: QueueReader, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)
    query = {name[len("q_") :]: value for name, value in fields.items() if name.startswith("q_")}

    def act() -> Response:
        try:
            with session.begin_nested():
                view = views.save_view(
                    session,
                    principal,
                    fields.get("name", ""),
                    query,
                    key_integrity_key=context.secrets.key_integrity_key,
                )
        except AppError as exc:
            return render_queue(
                request, principal, session, context, query, error=exc.public_message, status_code=exc.status
            )
        return RedirectResponse(f"/tips?view={view.id}", status_code=303)

    return await run_in_threadpool(act)


@router.post("/views/{view_id}/delete", response_class=HTMLResponse)
async def delete_view_form(
    view_id: uuid.UUID, request: Request, principal: QueueReader, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)
    await run_in_threadpool(views.delete_view, session, principal, view_id)
    return RedirectResponse("/tips", status_code=303)


@api_router.post("/bulk")
def bulk_api(principal: Triager, session: DbSession, body: JsonBody[bulk.BulkRequest]) -> JSONResponse:
    """One step on many reports, all or nothing: `{"updated": n}`, or the first refusal."""
    try:
        with session.begin_nested():
            done = bulk.apply(session, principal, body)
    except DecryptionError:
        raise IntegrityFailure from None
    return JSONResponse({"updated": done})
