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

from app.intake import report_form
from app.intake.report_form import FieldError, ReportState, Step
from app.intake.routes_api import InvalidSubmission, receive_form_tip
from app.kit.db import READ_ONLY_OPTION
from app.kit.errors import AppError
from app.kit.taxonomy import COUNTRY_CODES, Language, ReferralConsent
from app.stations.models import Station
from app.web.context import Context, UploadDbSession
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
    """Every country by its name in ``language``; where CLDR has none in it (Tibetan lacks 66),
    the English name, never the bare code."""
    names = babel_locale(language).territories
    english = babel_locale(Language.ENGLISH).territories
    return sorted(
        ((code, names.get(code) or english.get(code, code)) for code in COUNTRY_CODES),
        key=lambda pair: pair[1],
    )


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
    form_labels = {code.value: label for code, label in report_form.FORM_CHOICES}
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
    summary = [
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
    if consent_value in (ReferralConsent.PARTNERS_ONLY, ReferralConsent.AUTHORITIES_AND_PARTNERS):
        # Asked only of a report that may be passed on at all.
        summary.append(SummaryItem(N_("In which form"), "contact", chosen("referral_form", form_labels)))
    return summary


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
    # One format string, so that each language joins city and country with its own punctuation.
    label = translations(language).gettext(N_("%(city)s, %(country)s"))
    return [
        (str(station_id), label % {"city": city, "country": countries.get(country, country)})
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
        form_choices=report_form.FORM_CHOICES,
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


def first_value(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name, [])
    return values[0] if values else ""


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
    current = report_form.step_named(first_value(fields, "step")) or report_form.STEPS[0]
    go = first_value(fields, "go")
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
    return receipt_page(request, receipt, urgent=urgent, status_code=201)


def receipt_page(request: Request, receipt: str, *, urgent: bool, status_code: int = 200) -> HTMLResponse:
    return render_page(
        request,
        "intake/receipt.html",
        status_code=status_code,
        receipt=receipt,
        receipt_groups=receipt.split("-"),
        urgent=urgent,
        duress_flags_report=request.app.state.context.settings.duress_flags_report,
    )


async def form_rejected_handler(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, FormRejected)  # noqa: S101 - registered for FormRejected only
    context = request.app.state.context
    # In a worker thread: a step page may read the station list (never in the event loop).
    return await run_in_threadpool(
        show_step, request, context, exc.step, exc.state, errors=exc.errors, status_code=exc.status
    )


@router.get("/safety", response_class=HTMLResponse)
def safety(request: Request) -> HTMLResponse:
    return render_page(
        request,
        "intake/safety.html",
        language_path="/safety",
        photos_cleaned=request.app.state.context.settings.strip_attachment_metadata,
    )
