"""The submitter's follow-up pages: the receipt typed again opens the report's status, the
conversation with caseworkers, more files and deletion. Plain HTML forms that work with
JavaScript disabled; no page sets a cookie, so the receipt is carried in each page's forms.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.crypto import human_codes
from app.intake import duress, service
from app.intake.models import MessageAuthor, TipStatus
from app.intake.receipts import normalize_receipt
from app.intake.report_form import NUL_MESSAGE
from app.intake.routes_api import stream_multipart
from app.intake.routes_web import first_value, receipt_page
from app.intake.schemas import MESSAGE_MAX_CHARS
from app.kit.errors import AppError
from app.web.admission import release_admission, try_admit
from app.web.context import AppContext, Context, DbSession, UploadDbSession
from app.web.forms import CrossSiteForm, posted_from_elsewhere, read_form_values
from app.web.i18n import N_
from app.web.pages import render_page

router = APIRouter()


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
MESSAGE_SENT = N_("Your message was sent.")
FILES_RECEIVED = N_("Your files were received.")
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
    holder: service.FollowupHolder,
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
        duress_flags_report=request.app.state.context.settings.duress_flags_report,
    )


def open_followup(session: Session, context: AppContext, typed: str) -> service.FollowupHolder | None:
    return service.open_followup(
        session,
        typed,
        receipt_pepper=context.secrets.receipt_pepper,
        key_integrity_key=context.secrets.key_integrity_key,
        flag_duress=context.settings.duress_flags_report,
    )


async def _open_with_receipt(
    request: Request, session: DbSession, context: Context, fields: dict[str, list[str]]
) -> service.FollowupHolder | None:
    return await run_in_threadpool(open_followup, session, context, first_value(fields, "receipt"))


ReceiptPost = tuple[dict[str, list[str]], service.FollowupHolder]


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
            request,
            typed=first_value(fields, "receipt")[:100],
            errors=[UNKNOWN_RECEIPT_MESSAGE],
            status_code=401,
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
    return _followup_page(request, holder, first_value(fields, "receipt"))


@router.post("/receipt", response_class=HTMLResponse)
async def receipt_again(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    """The receipt page again, in another language (its language buttons post here)."""
    opened = await _receipt_post(request, session, context)
    if isinstance(opened, HTMLResponse):
        return opened
    fields, holder = opened
    digits = normalize_receipt(first_value(fields, "receipt"))
    assert digits is not None  # noqa: S101 - a receipt that opened a report normalises
    # Shown as the service writes receipts, not as it was typed.
    urgent = holder.state.urgent if isinstance(holder, duress.DuressHolder) else holder.tip.urgent
    return receipt_page(request, human_codes.group(digits), urgent=urgent)


@router.post("/followup/reply", response_class=HTMLResponse)
async def followup_reply(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    opened = await _receipt_post(request, session, context)
    if isinstance(opened, HTMLResponse):
        return opened
    fields, holder = opened
    receipt, body = first_value(fields, "receipt"), first_value(fields, "body").strip()
    if not body or len(body) > MESSAGE_MAX_CHARS or "\x00" in body:
        # NUL is refused as the JSON API refuses it (app/intake/schemas.py, FollowupMessageRequest).
        problem = (
            EMPTY_MESSAGE if not body else LONG_MESSAGE if len(body) > MESSAGE_MAX_CHARS else NUL_MESSAGE
        )
        return _followup_page(
            request,
            holder,
            receipt,
            errors=[problem],
            draft=first_value(fields, "body"),
            status_code=422,
        )
    if isinstance(holder, duress.DuressHolder):
        duress.record_message(holder)  # the message itself goes nowhere
    else:
        await run_in_threadpool(
            service.add_message,
            session,
            holder.tip,
            body,
            author=MessageAuthor.SUBMITTER,
            server_secrets=context.secrets,
        )
    return _followup_page(request, holder, receipt, notices=[MESSAGE_SENT], status_code=201)


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
        raise FollowupRefused(
            exc.status, exc.public_message, receipt=first_value(received, "receipt")
        ) from None
    holder = await _open_with_receipt(request, session, context, fields)
    if holder is None:
        raise FollowupRefused(401, UNKNOWN_RECEIPT_MESSAGE)
    if not draft.attachments:
        return _followup_page(
            request,
            holder,
            first_value(fields, "receipt"),
            errors=[N_("Choose at least one file to send.")],
            status_code=422,
        )
    if isinstance(holder, duress.DuressHolder):
        # Answered as received, and raised so that the rollback deletes what was written.
        raise FollowupRefused(201, FILES_RECEIVED, receipt=first_value(fields, "receipt"), as_notice=True)
    await run_in_threadpool(service.add_followup_files, session, holder.tip, draft)
    return _followup_page(
        request, holder, first_value(fields, "receipt"), notices=[FILES_RECEIVED], status_code=201
    )


class FollowupRefused(AppError):
    """A refused follow-up upload, shown as a page; raised so the transaction (and the files
    written so far) roll back. ``as_notice``: files a duress code "sent", discarded but
    answered as a real report's would be."""

    def __init__(self, status: int, message: str, *, receipt: str = "", as_notice: bool = False) -> None:
        super().__init__()
        self.status = status
        self.message = message
        self.receipt = receipt
        self.as_notice = as_notice


async def followup_refused_handler(request: Request, exc: Exception) -> HTMLResponse:
    """The report's page with the reason, when the receipt opens one; else the receipt page.
    The lookup takes a database slot like any request; without one, the receipt page."""
    assert isinstance(exc, FollowupRefused)  # noqa: S101 - registered for FollowupRefused only
    context = request.app.state.context

    def render() -> HTMLResponse:
        with context.database.transaction() as session:
            holder = open_followup(session, context, exc.receipt)
            if holder is None:
                return _followup_start(request, errors=[exc.message], status_code=exc.status)
            if exc.as_notice:
                return _followup_page(
                    request, holder, exc.receipt, notices=[exc.message], status_code=exc.status
                )
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
    if first_value(fields, "confirm") != "yes":
        return render_page(
            request,
            "intake/followup_delete.html",
            receipt=first_value(fields, "receipt"),
            language_path="/followup",
        )
    if isinstance(holder, duress.DuressHolder):
        duress.record_deletion(holder)  # the report stays; the code opens nothing from now on
    else:
        await run_in_threadpool(service.delete_tip, session, holder, context.blobs)
    return render_page(request, "intake/followup_deleted.html", language_path="/followup")


@router.post("/followup/duress", response_class=HTMLResponse)
async def followup_duress_code(request: Request, session: DbSession, context: Context) -> HTMLResponse:
    """A new duress code for the report (app.intake.duress), shown once. Asked with a duress
    code, it makes another for the same report: the page it is asked from must not differ."""
    opened = await _receipt_post(request, session, context)
    if isinstance(opened, HTMLResponse):
        return opened
    fields, holder = opened
    pepper = context.secrets.receipt_pepper
    if isinstance(holder, duress.DuressHolder):
        code = await run_in_threadpool(duress.create_alias_code, session, holder, pepper)
    else:
        code = await run_in_threadpool(duress.create_duress_code, session, holder.tip, pepper)
    return render_page(
        request,
        "intake/duress_code.html",
        status_code=201,
        receipt=first_value(fields, "receipt"),
        code_groups=code.split("-"),
        duress_flags_report=context.settings.duress_flags_report,
    )
