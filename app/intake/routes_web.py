"""The submitter's pages: plain HTML forms that work with JavaScript disabled."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.errors import AppError
from app.intake.routes_api import InvalidSubmission, receive_form_tip
from app.intake.taxonomy import Tactic
from app.web.context import Context, DbSession
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
    """A form that failed validation, re-rendered with what was typed (the transaction rolls back)."""

    status = 422
    code = "invalid_input"

    def __init__(self, errors: list[dict[str, str]], form: dict[str, Any]) -> None:
        super().__init__()
        self.errors = errors
        self.form = form


def report_form(request: Request, *, status_code: int = 200, errors: list[dict[str, str]] | None = None,
                form: dict[str, Any] | None = None) -> HTMLResponse:
    tactics = [{"code": tactic.value, "label": label} for tactic, label in TACTIC_LABELS.items()]
    return render_page(request, "intake/report_form.html", status_code=status_code,
                       tactics=tactics, errors=errors or [], form=form or {"tactics": []})


@router.get("/", response_class=HTMLResponse)
def show_report_form(request: Request) -> HTMLResponse:
    return report_form(request)


@router.post("/report", response_class=HTMLResponse)
async def submit_report_form(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    try:
        receipt = await receive_form_tip(request, session, context)
    except InvalidSubmission as exc:
        raise FormRejected(exc.fields, exc.typed) from None
    return render_page(request, "intake/receipt.html", status_code=201, receipt=receipt)


async def form_rejected_handler(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, FormRejected)  # noqa: S101 - registered for FormRejected only
    return report_form(request, status_code=422, errors=exc.errors, form=exc.form)
