"""The submitter's pages: plain HTML forms that work with JavaScript disabled."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.errors import AppError
from app.intake.routes_api import InvalidSubmission, receive_form_tip
from app.intake.taxonomy import Tactic
from app.web.context import Context, DbSession
from app.web.forms import CrossSiteForm, posted_from_elsewhere
from app.web.pages import render_page

router = APIRouter()

TACTIC_LABELS = {
    Tactic.FAMILY_PRESSURE: "My family in China was pressured or threatened",
    Tactic.PERSUADE_TO_RETURN: "Someone urged me to go back",
    Tactic.STATION_CONTACT: "I was contacted by an overseas police \"service station\"",
    Tactic.SURVEILLANCE: "I was watched or followed",
    Tactic.DIGITAL_THREATS: "I was threatened or harassed online",
    Tactic.DOCUMENT_DENIAL: "My passport or documents were refused or taken",
    Tactic.LEGAL_COERCION: "I was targeted through legal channels (Interpol, false reports)",
    Tactic.PHYSICAL: "I was physically threatened or attacked",
    Tactic.OTHER: "Something else",
}


class FormRejected(AppError):
    """A refused form, shown again as a page (never as JSON to a no-JS browser), with what
    was typed when it could be read. Raised, so the request's transaction rolls back."""

    def __init__(self, status: int, messages: list[str], form: dict[str, Any]) -> None:
        super().__init__()
        self.status = status
        self.messages = messages
        self.form = form


def _field_message(error: dict[str, str]) -> str:
    # Only field names we know are shown: a crafted form's field names are
    # not echoed onto the page.
    label = FIELD_LABELS.get(error["field"].split(".")[0])
    return f"{label}: {error['message']}" if label else "The form had a field this site does not know."


FIELD_LABELS = {
    "narrative": "What happened",
    "tactics": "What happened (choices)",
    "host_country": "Country",
    "host_city": "City",
    "urgent": "Immediate danger",
    "language": "Language",
    "station_id": "Station",
}


def report_form(request: Request, *, status_code: int = 200, messages: list[str] | None = None,
                form: dict[str, Any] | None = None) -> HTMLResponse:
    tactics = [{"code": tactic.value, "label": label} for tactic, label in TACTIC_LABELS.items()]
    return render_page(request, "intake/report_form.html", status_code=status_code,
                       tactics=tactics, messages=messages or [], form=form or {"tactics": []})


@router.get("/", response_class=HTMLResponse)
def show_report_form(request: Request) -> HTMLResponse:
    return report_form(request)


@router.post("/report", response_class=HTMLResponse)
async def submit_report_form(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    if posted_from_elsewhere(request):
        raise FormRejected(CrossSiteForm.status, [CrossSiteForm.public_message], {})
    try:
        receipt = await receive_form_tip(request, session, context)
    except InvalidSubmission as exc:
        raise FormRejected(exc.status, [_field_message(e) for e in exc.fields], exc.typed) from None
    except AppError as exc:  # too large, unreadable, busy, not initialised: still a page
        raise FormRejected(exc.status, [exc.public_message], {}) from None
    return render_page(request, "intake/receipt.html", status_code=201, receipt=receipt)


async def form_rejected_handler(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, FormRejected)  # noqa: S101 - registered for FormRejected only
    return report_form(request, status_code=exc.status, messages=exc.messages,
                       form=exc.form or {"tactics": []})
