"""The submitter's pages: plain HTML forms that work with JavaScript disabled.

No page sets a cookie. The language is in every link and form action; the
report's answers travel in hidden fields between the steps; after sending,
the receipt is the only key back in, typed again (or carried in the page's
forms) for each follow-up action.
"""

from __future__ import annotations

import functools
import re
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.crypto import human_codes
from app.intake import report_form, service
from app.intake.models import MessageAuthor, TipStatus
from app.intake.receipts import normalize_receipt
from app.intake.report_form import FieldError, ReportState, Step
from app.intake.routes_api import InvalidSubmission, receive_form_tip, stream_multipart
from app.intake.schemas import MESSAGE_MAX_CHARS
from app.kit.db import READ_ONLY_OPTION
from app.kit.errors import AppError
from app.kit.taxonomy import COUNTRY_CODES, Language
from app.stations.models import Station
from app.web.admission import release_admission, try_admit
from app.web.context import Context, DbSession, UploadDbSession
from app.web.forms import CrossSiteForm, posted_from_elsewhere, read_form_values
from app.web.i18n import N_, babel_locale, translations
from app.web.pages import language_for, render_page

router = APIRouter()
REVIEW = report_form.STEPS[-1]


class FormRejected(AppError):
    """A refused report form, shown again as a page (never as JSON to a no-JS browser) at the
    step to fix, with every answer kept. Raised, so the request's transaction rolls back."""

    def __init__(self, status: int, errors: Sequence[FieldError], state: ReportState, step: Step) -> None:
        super().__init__()
        self.status = status
        self.errors = list(errors)
        self.state = state
        self.step = step


@functools.cache
def _countries(language: Language) -> list[tuple[str, str]]:
    names = babel_locale(language).territories
    return sorted(((code, names.get(code, code)) for code in COUNTRY_CODES), key=lambda pair: pair[1])


@functools.cache
def _months(language: Language) -> list[tuple[int, str]]:
    wide = babel_locale(language).months["stand-alone"]["wide"]
    return [(number, wide[number]) for number in range(1, 13)]


@dataclass(frozen=True, slots=True)
class SummaryItem:
    label: str
    step: str
    values: list[str]


def _summary(state: ReportState, language: Language, stations: dict[str, str]) -> list[SummaryItem]:
    """The review page's answers, in the submitter's language; choices by their labels."""
    translate = translations(language).gettext
    tactic_labels = {code.value: label for code, label, _ in report_form.TACTIC_CHOICES}
    perpetrator_labels = {code.value: label for code, label in report_form.PERPETRATOR_CHOICES}
    contact_labels = {code.value: label for code, label, _ in report_form.CONTACT_CHOICES}
    consent_labels = {(code.value if code else ""): label for code, label in report_form.CONSENT_CHOICES}
    countries = dict(_countries(language))
    months = dict(_months(language))

    def chosen(name: str, labels: dict[str, str]) -> list[str]:
        return [translate(labels[value]) for value in state.all(name) if value in labels]

    month = state.first("incident_month")
    when = [
        part
        for part in (
            # Only what the form offers: a crafted value ("²", 5,000 digits) is not a month.
            months.get(int(month), "") if re.fullmatch(r"[0-9]{1,2}", month) else "",
            state.first("incident_year"),
            translate(N_("still going on")) if state.first("ongoing") else "",
        )
        if part
    ]
    place = [
        part for part in (state.first("host_city"), countries.get(state.first("host_country"), "")) if part
    ]
    contact = chosen("contact_preference", contact_labels) or [translate(contact_labels["receipt_only"])]
    if state.first("contact_preference") == "other_channel" and state.first("contact_details"):
        contact.append(state.first("contact_details"))
    consent_value = state.first("referral_consent")
    said = [state.first("narrative")] if state.first("narrative") else []
    return [
        SummaryItem(N_("What happened"), "what", chosen("tactics", tactic_labels)),
        SummaryItem(N_("Where"), "where", place),
        SummaryItem(N_("When"), "where", when),
        SummaryItem(N_("Who was behind it"), "who", chosen("perpetrators", perpetrator_labels)),
        SummaryItem(
            N_("Station"),
            "who",
            [stations[state.first("station_id")]] if state.first("station_id") in stations else [],
        ),
        SummaryItem(N_("In your own words"), "story", said),
        SummaryItem(
            N_("Immediate danger"),
            "story",
            [translate(N_("Yes, someone is in immediate danger"))] if state.first("urgent") else [],
        ),
        SummaryItem(N_("Contact"), "contact", contact),
        SummaryItem(
            N_("Passing on your report"),
            "contact",
            [translate(consent_labels[consent_value])] if consent_value in consent_labels else [],
        ),
    ]


# The registry is public, sourced data that changes by import: read at most this often per
# process, so that a flood of form steps does not turn into a flood of database reads.
STATION_LIST_SECONDS = 30.0
_StationRows = list[tuple[uuid.UUID, str, str]]
_station_rows_cache: dict[int, tuple[weakref.ref[object], float, _StationRows]] = {}
_station_rows_lock = threading.Lock()


def _station_rows(context: Context) -> _StationRows:
    key = id(context.database)
    with _station_rows_lock:
        cached = _station_rows_cache.get(key)
        # The weak reference tells this database from a later one given the same id.
        if cached is not None and cached[0]() is context.database and cached[1] > time.monotonic():
            return cached[2]
        with context.database.transaction() as session:
            # Read-only: a page view must not take SQLite's write lock (BEGIN IMMEDIATE).
            session.connection(execution_options={READ_ONLY_OPTION: True})
            statement = select(Station.id, Station.city, Station.country).order_by(
                Station.country, Station.city_key
            )
            rows = [(station_id, city, country) for station_id, city, country in session.execute(statement)]
        _station_rows_cache[key] = (
            weakref.ref(context.database),
            time.monotonic() + STATION_LIST_SECONDS,
            rows,
        )
        return rows


def _station_choices(context: Context, language: Language) -> list[tuple[str, str]]:
    """The registry's stations as a submitter may name them: city and country, no case data."""
    countries = dict(_countries(language))
    return [
        (str(station_id), f"{city}, {countries.get(country, country)}")
        for station_id, city, country in _station_rows(context)
    ]


def show_step(
    request: Request,
    context: Context,
    step: Step,
    state: ReportState,
    *,
    errors: Sequence[FieldError] = (),
    status_code: int = 200,
) -> HTMLResponse:
    language = Language(language_for(request).code)
    stations = _station_choices(context, language) if step.key in ("who", "review") else []
    return render_page(
        request,
        "intake/report_step.html",
        status_code=status_code,
        step=step,
        step_number=report_form.STEP_KEYS.index(step.key) + 1,
        steps=report_form.STEPS,
        state=state,
        errors=list(errors),
        error_fields={error.field for error in errors},
        hidden=state.hidden_fields(except_fields=(*step.fields, "language")),
        tactic_choices=report_form.TACTIC_CHOICES,
        perpetrator_choices=report_form.PERPETRATOR_CHOICES,
        contact_choices=report_form.CONTACT_CHOICES,
        consent_choices=report_form.CONSENT_CHOICES,
        countries=_countries(language),
        months=_months(language),
        years=report_form.incident_years(),
        limits=report_form.LIMITS,
        urgent=bool(state.first("urgent")),
        summary=_summary(state, language, dict(stations)) if step is REVIEW else [],
        stations=stations,
        max_files=context.settings.max_files_per_tip,
        photos_cleaned=context.settings.strip_attachment_metadata,
    )


@router.get("/", response_class=HTMLResponse)
def show_report_form(request: Request, context: Context) -> HTMLResponse:
    return show_step(request, context, report_form.STEPS[0], ReportState())


@router.post("/report/step", response_class=HTMLResponse)
async def report_step(request: Request, context: Context) -> HTMLResponse:
    """Move between the form's steps: "next" checks this step's answers, "back", "edit:<step>"
    and "stay" (a language change) do not."""
    try:
        fields = await read_form_values(request, context.settings)
    except AppError as exc:
        raise FormRejected(
            exc.status, [FieldError("", exc.public_message)], ReportState(), report_form.STEPS[0]
        ) from None
    state = ReportState.from_form(fields)
    current = report_form.step_named(_first(fields, "step")) or report_form.STEPS[0]
    go = _first(fields, "go")
    if go == "back":
        target = report_form.neighbour(current, -1)
    elif go.startswith("edit:"):
        target = report_form.step_named(go.removeprefix("edit:")) or current
    elif go == "stay":
        target = current
    else:
        errors = report_form.step_errors(state, current)
        if errors:
            return await run_in_threadpool(
                show_step, request, context, current, state, errors=errors, status_code=422
            )
        target = report_form.neighbour(current, 1)
    if target is REVIEW:
        _, errors = report_form.validate(state)
        if errors:  # an answer of an earlier step (a crafted or stale form): back to it
            return await run_in_threadpool(
                show_step,
                request,
                context,
                report_form.first_step_with_errors(errors),
                state,
                errors=errors,
                status_code=422,
            )
    return await run_in_threadpool(show_step, request, context, target, state)


@router.post("/report", response_class=HTMLResponse)
async def submit_report_form(request: Request, session: UploadDbSession, context: Context) -> HTMLResponse:
    if posted_from_elsewhere(request):
        # Nothing of another site's post is shown back: it could plant words on our page.
        raise FormRejected(
            CrossSiteForm.status,
            [FieldError("", CrossSiteForm.public_message)],
            ReportState(),
            report_form.STEPS[0],
        )
    received: dict[str, list[str]] = {}
    try:
        receipt = await receive_form_tip(request, session, context, received)
    except InvalidSubmission as exc:
        raise FormRejected(
            exc.status, exc.errors, exc.state, report_form.first_step_with_errors(exc.errors)
        ) from None
    except AppError as exc:  # too large, unreadable, busy, not initialised: still a page
        raise FormRejected(
            exc.status, [FieldError("", exc.public_message)], ReportState.from_form(received), REVIEW
        ) from None
    urgent = bool(ReportState.from_form(received).first("urgent"))
    return _receipt_page(request, receipt, urgent=urgent, status_code=201)


def _receipt_page(request: Request, receipt: str, *, urgent: bool, status_code: int = 200) -> HTMLResponse:
    return render_page(
        request,
        "intake/receipt.html",
        status_code=status_code,
        receipt=receipt,
        receipt_groups=receipt.split("-"),
        urgent=urgent,
    )


async def form_rejected_handler(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, FormRejected)  # noqa: S101 - registered for FormRejected only
    context = request.app.state.context
    # In a worker thread: a step page may read the station list (never in the event loop).
    return await run_in_threadpool(
        show_step, request, context, exc.step, exc.state, errors=exc.errors, status_code=exc.status
    )


def _first(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name, [])
    return values[0] if values else ""


# --- Follow-up with the receipt --------------------------------------------------------------------

STATUS_TEXT = {
    TipStatus.NEW: (N_("Received"), N_("Your report has arrived and is waiting to be read.")),
    TipStatus.IN_REVIEW: (N_("Being reviewed"), N_("A caseworker is looking at your report.")),
    TipStatus.NEEDS_INFO: (
        N_("We have a question for you"),
        N_("Please read the latest message below and answer if you can."),
    ),
    TipStatus.VERIFIED: (N_("Verified"), N_("We have checked your report and are working with it.")),
    TipStatus.REJECTED: (
        N_("Closed"),
        N_("We are not taking this report further. Thank you for sending it."),
    ),
}
UNKNOWN_RECEIPT_MESSAGE = N_("No report matches this receipt. Check it and try again.")
EMPTY_MESSAGE = N_("Write a message before sending.")
LONG_MESSAGE = N_("Your message is longer than 20,000 characters. Please shorten it or send it in parts.")


def _followup_start(
    request: Request, *, typed: str = "", errors: Sequence[str] = (), status_code: int = 200
) -> HTMLResponse:
    return render_page(
        request,
        "intake/followup_start.html",
        status_code=status_code,
        typed_receipt=typed,
        messages=list(errors),
        language_path="/followup",
    )


def _followup_page(
    request: Request,
    holder: service.ReceiptHolder,
    receipt: str,
    *,
    notices: Sequence[str] = (),
    errors: Sequence[str] = (),
    draft: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    view = service.followup_view(holder)
    title, explanation = STATUS_TEXT[TipStatus(view.status)]
    return render_page(
        request,
        "intake/followup.html",
        status_code=status_code,
        view=view,
        receipt=receipt,
        status_title=title,
        status_explanation=explanation,
        notices=list(notices),
        messages=list(errors),
        draft=draft,
        max_files=request.app.state.context.settings.max_files_per_tip,
        photos_cleaned=request.app.state.context.settings.strip_attachment_metadata,
    )


async def _open_with_receipt(
    request: Request, session: DbSession, context: Context, fields: dict[str, list[str]]
) -> service.ReceiptHolder | None:
    receipt = _first(fields, "receipt")
    return await run_in_threadpool(
        service.tip_for_receipt, session, receipt, receipt_pepper=context.secrets.receipt_pepper
    )


ReceiptPost = tuple[dict[str, list[str]], service.ReceiptHolder]


async def _receipt_post(request: Request, session: DbSession, context: Context) -> ReceiptPost | HTMLResponse:
    """A follow-up form's fields and the report its receipt opens; otherwise the receipt page,
    with the same 401 for every receipt that opens nothing."""
    try:
        fields = await read_form_values(request, context.settings)
    except AppError as exc:
        return _followup_start(request, errors=[exc.public_message], status_code=exc.status)
    holder = await _open_with_receipt(request, session, context, fields)
    if holder is None:
        return _followup_start(
            request, typed=_first(fields, "receipt")[:100], errors=[UNKNOWN_RECEIPT_MESSAGE], status_code=401
        )
    return fields, holder


@router.get("/followup", response_class=HTMLResponse)
def followup_start(request: Request) -> HTMLResponse:
    return _followup_start(request)


@router.post("/followup", response_class=HTMLResponse)
async def followup(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    opened = await _receipt_post(request, session, context)
    if isinstance(opened, HTMLResponse):
        return opened
    fields, holder = opened
    return _followup_page(request, holder, _first(fields, "receipt"))


@router.post("/receipt", response_class=HTMLResponse)
async def receipt_again(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    """The receipt page again, in another language (its language buttons post here)."""
    opened = await _receipt_post(request, session, context)
    if isinstance(opened, HTMLResponse):
        return opened
    fields, holder = opened
    digits = normalize_receipt(_first(fields, "receipt"))
    assert digits is not None  # noqa: S101 - a receipt that opened a report normalises
    # Shown as the service writes receipts, not as it was typed.
    return _receipt_page(request, human_codes.group(digits), urgent=holder.tip.urgent)


@router.post("/followup/reply", response_class=HTMLResponse)
async def followup_reply(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    opened = await _receipt_post(request, session, context)
    if isinstance(opened, HTMLResponse):
        return opened
    fields, holder = opened
    receipt, body = _first(fields, "receipt"), _first(fields, "body").strip()
    if not body or len(body) > MESSAGE_MAX_CHARS:
        return _followup_page(
            request,
            holder,
            receipt,
            errors=[EMPTY_MESSAGE if not body else LONG_MESSAGE],
            draft=_first(fields, "body"),
            status_code=422,
        )
    await run_in_threadpool(
        service.add_message,
        session,
        holder.tip,
        body,
        author=MessageAuthor.SUBMITTER,
        server_secrets=context.secrets,
    )
    return _followup_page(request, holder, receipt, notices=[N_("Your message was sent.")], status_code=201)


@router.post("/followup/files", response_class=HTMLResponse)
async def followup_files(request: Request, session: UploadDbSession, context: Context) -> HTMLResponse:
    """Files added with the receipt: encrypted while they stream in, then kept only if the
    receipt (posted before them) opens a report; otherwise the rollback deletes them."""
    if posted_from_elsewhere(request):
        return _followup_start(request, errors=[CrossSiteForm.public_message], status_code=403)
    received: dict[str, list[str]] = {}
    try:
        draft, fields = await stream_multipart(
            request,
            session,
            context,
            service.start_followup_files,
            text_fields=frozenset({"receipt"}),
            received_fields=received,
        )
    except AppError as exc:
        # Raised, so that the files written so far are deleted with the rollback.
        raise FollowupRefused(exc.status, exc.public_message, receipt=_first(received, "receipt")) from None
    holder = await _open_with_receipt(request, session, context, fields)
    if holder is None:
        raise FollowupRefused(401, UNKNOWN_RECEIPT_MESSAGE)
    if not draft.attachments:
        return _followup_page(
            request,
            holder,
            _first(fields, "receipt"),
            errors=[N_("Choose at least one file to send.")],
            status_code=422,
        )
    await run_in_threadpool(service.add_followup_files, session, holder.tip, draft)
    return _followup_page(
        request, holder, _first(fields, "receipt"), notices=[N_("Your files were received.")], status_code=201
    )


class FollowupRefused(AppError):
    """A refused follow-up upload, shown as a page; raised so the transaction (and the files
    written so far) roll back."""

    def __init__(self, status: int, message: str, *, receipt: str = "") -> None:
        super().__init__()
        self.status = status
        self.message = message
        self.receipt = receipt


async def followup_refused_handler(request: Request, exc: Exception) -> HTMLResponse:
    """The report's page with the reason, when the receipt opens one; else the receipt page.
    The lookup takes a database slot like any request; without one, the receipt page."""
    assert isinstance(exc, FollowupRefused)  # noqa: S101 - registered for FollowupRefused only
    context = request.app.state.context

    def render() -> HTMLResponse:
        with context.database.transaction() as session:
            holder = service.tip_for_receipt(
                session, exc.receipt, receipt_pepper=context.secrets.receipt_pepper
            )
            if holder is None:
                return _followup_start(request, errors=[exc.message], status_code=exc.status)
            return _followup_page(request, holder, exc.receipt, errors=[exc.message], status_code=exc.status)

    if not await try_admit(request):
        return _followup_start(request, errors=[exc.message], status_code=exc.status)
    try:
        return await run_in_threadpool(render)
    finally:
        release_admission(request)


@router.post("/followup/delete", response_class=HTMLResponse)
async def followup_delete(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    """Without ``confirm=yes``: a page that asks. With it: the report is crypto-shredded."""
    opened = await _receipt_post(request, session, context)
    if isinstance(opened, HTMLResponse):
        return opened
    fields, holder = opened
    if _first(fields, "confirm") != "yes":
        return render_page(
            request,
            "intake/followup_delete.html",
            receipt=_first(fields, "receipt"),
            language_path="/followup",
        )
    await run_in_threadpool(service.delete_tip, session, holder, context.blobs)
    return render_page(request, "intake/followup_deleted.html", language_path="/followup")


@router.get("/safety", response_class=HTMLResponse)
def safety(request: Request) -> HTMLResponse:
    return render_page(
        request,
        "intake/safety.html",
        language_path="/safety",
        photos_cleaned=request.app.state.context.settings.strip_attachment_metadata,
    )
