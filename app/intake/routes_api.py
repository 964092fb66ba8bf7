"""The submitter's JSON API (DESIGN 8). Every route here is public by design."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.intake import duress, report_form, service
from app.intake.group_commit import TipCommitter
from app.intake.models import MessageAuthor, TipStatus
from app.intake.schemas import FollowupMessageRequest, ReceiptRequest, TipReceipt, TipSubmission
from app.kit.errors import InvalidInput, ServiceUnavailable, UnsupportedMediaType, error_body, error_responses
from app.kit.server_secrets import ServerSecrets
from app.web.admission import ServiceBusy, admit, run_admitted
from app.web.context import AppContext, Context, finishing
from app.web.forms import CrossSiteForm, posted_from_elsewhere
from app.web.i18n import N_
from app.web.json_body import JsonBody, JsonBodyReader
from app.web.multipart import StreamingFormReader
from app.web.request_body import MalformedBody, TransferFloor, bounded_stream, media_type, read_bounded_body

router = APIRouter(prefix="/api/v1", responses=error_responses(500, 503, 507))


# Longer than any healthy group commit by far; past it the database is stuck (a lock held by
# maintenance, a server that stopped answering) and the client is told to come back.
COMMIT_WAIT_SECONDS = 10.0


def tip_committer(request: Request) -> TipCommitter:
    committer: TipCommitter = request.app.state.tip_committer
    return committer


# One answer for every receipt that opens nothing, malformed or not.
UNKNOWN_RECEIPT = error_body("unknown_receipt", "No report matches this receipt.")
# The report form also posts which step it came from; it means nothing to the submission.
FORM_NAVIGATION_FIELDS = frozenset({"step", "go"})
FORM_FIELDS = report_form.REPORT_FIELDS | FORM_NAVIGATION_FIELDS


class InvalidSubmission(InvalidInput):
    """A form submission that failed validation; carries what was answered, to show it again."""

    def __init__(self, errors: list[report_form.FieldError], state: report_form.ReportState) -> None:
        super().__init__(fields=[{"field": error.field, "message": error.message} for error in errors])
        self.errors = errors
        self.state = state


def _form_to_submission(fields: dict[str, list[str]]) -> TipSubmission:
    state = report_form.ReportState.from_form(fields)
    unknown = sorted(set(fields) - FORM_FIELDS)
    submission, errors = report_form.validate(state)
    if unknown:
        errors = [report_form.FieldError("", report_form.UNKNOWN_FIELD_MESSAGE), *errors]
    if submission is None or errors:
        raise InvalidSubmission(errors, state)
    return submission


async def receive_urlencoded_tip(
    request: Request,
    session: Session,
    context: AppContext,
    received_fields: dict[str, list[str]] | None = None,
) -> str:
    """A form posted without files (a browser may send these urlencoded)."""
    body = await read_bounded_body(request, context.settings)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise MalformedBody(N_("The form data could not be read.")) from None
    if received_fields is not None:
        received_fields.update(fields)
    submission = _form_to_submission(fields)
    await admit(request)  # the session's database slot (an upload route: see UploadDbSession)
    draft = await run_in_threadpool(service.start_tip, session, context.secrets)
    return await run_in_threadpool(service.finish_tip, session, draft, submission)


async def receive_form_tip(
    request: Request,
    session: Session,
    context: AppContext,
    received_fields: dict[str, list[str]] | None = None,
) -> str:
    """``received_fields`` fills with the text fields as they are read, for a page that
    must show the answers again if the upload is refused halfway."""
    kind = media_type(request)
    if kind == "multipart/form-data":
        return await receive_multipart_tip(request, session, context, received_fields)
    if kind == "application/x-www-form-urlencoded":
        return await receive_urlencoded_tip(request, session, context, received_fields)
    raise UnsupportedMediaType("Send multipart/form-data.")


DraftT = TypeVar("DraftT", bound=service.UploadDraft)


def _in_own_transaction(context: AppContext, start: Callable[[Session, ServerSecrets], DraftT]) -> DraftT:
    # Its own short transaction: the request's transaction must not be open
    # (holding a pooled connection, and SQLite's write lock) while a client
    # takes minutes to upload, or a few slow clients would stall everyone.
    with context.database.transaction() as lookup:
        return start(lookup, context.secrets)


async def stream_multipart(
    request: Request,
    session: Session,
    context: AppContext,
    start: Callable[[Session, ServerSecrets], DraftT],
    *,
    text_fields: frozenset[str],
    received_fields: dict[str, list[str]] | None = None,
) -> tuple[DraftT, dict[str, list[str]]]:
    """Stream a multipart body: files are encrypted to disk as they arrive.

    The request's database session is first used after the last byte has
    arrived; until then only the blob cleanup is registered on it.
    """
    settings = context.settings
    if media_type(request) != "multipart/form-data":
        raise UnsupportedMediaType("Send multipart/form-data.")
    if context.upload_slots.locked():
        raise ServiceBusy
    async with context.upload_slots:
        # Admitted for the lookup only: the body may take minutes to arrive.
        draft = await run_admitted(request, lambda: _in_own_transaction(context, start))
        reader = StreamingFormReader(
            request.headers["content-type"],
            file_field="files",
            text_fields=text_fields,
            open_file=lambda content_type: draft.open_attachment(
                session, context.blobs, settings=settings, content_type=content_type
            ),
            max_field_bytes=settings.max_json_bytes,
            max_files=settings.max_files_per_tip,
            max_parts=settings.max_form_parts,
            fields=received_fields,
        )
        try:
            async for chunk in bounded_stream(
                request,
                settings.max_request_bytes,
                idle_timeout=settings.request_idle_timeout_seconds,
                floor=TransferFloor.for_uploads(settings),
            ):
                # In a thread: a closing part may be a photo being re-encoded.
                await run_in_threadpool(reader.feed, chunk)
            await run_in_threadpool(reader.finish)
        finally:
            for writer in draft.attachments:
                writer.abort()
    # The body is in: from here on the request uses the database until its commit, within
    # admission like every other request (released after the commit).
    await admit(request)
    return draft, reader.fields


async def receive_multipart_tip(
    request: Request,
    session: Session,
    context: AppContext,
    received_fields: dict[str, list[str]] | None = None,
) -> str:
    draft, fields = await stream_multipart(
        request, session, context, service.start_tip, text_fields=FORM_FIELDS, received_fields=received_fields
    )
    submission = _form_to_submission(fields)
    return await run_in_threadpool(service.finish_tip, session, draft, submission)


# A tip as JSON, read before the route runs; a multipart one (the report form's files) is left
# for the route to stream.
TipJson = Annotated[
    TipSubmission | None, Depends(JsonBodyReader(TipSubmission, streamed_media_type="multipart/form-data"))
]


@router.post("/tips", status_code=201, response_model=TipReceipt, responses=error_responses(403))
async def submit_tip(request: Request, context: Context, submission: TipJson) -> TipReceipt:
    if submission is None:
        # JSON needs a type no cross-site form can send; multipart does not, so the browser's
        # own word on where the post came from decides.
        if posted_from_elsewhere(request):
            raise CrossSiteForm
        # The session takes no connection until the last byte has arrived (stream_multipart).
        async with finishing(context.database.session_factory()) as session:
            receipt = await receive_multipart_tip(request, session, context)
    else:
        committer = tip_committer(request)
        if not committer.knows_current_key:
            # The first tip of this process (or after an error): the key is read in a worker
            # thread, within a database slot, never in the event loop.
            await run_admitted(request, committer.read_current_key)
        # Sealed here, in the event loop: under half a millisecond of CPU, which a worker
        # thread would not run any sooner (the GIL) but would cost two thread hand-overs.
        # Committed with the other tips waiting (group_commit); a commit that does not come
        # back in time is a 503 (the tip may still be stored, but was not acknowledged).
        try:
            committed = asyncio.wrap_future(committer.submit(submission))
            receipt = await asyncio.wait_for(asyncio.shield(committed), COMMIT_WAIT_SECONDS)
        except TimeoutError:
            raise ServiceUnavailable from None
    return TipReceipt(receipt=receipt)


ReceiptBody = TypeVar("ReceiptBody", bound=ReceiptRequest)


async def answer_receipt_holder(
    request: Request,
    context: AppContext,
    body: ReceiptBody,
    answer: Callable[[Session, service.FollowupHolder, ReceiptBody], JSONResponse],
) -> JSONResponse:
    """Open the tip a receipt-bearing body names and answer; the same 401 otherwise.

    The 401 is returned, not raised, like every answer here: the request's
    transaction ends the same way whether or not the receipt matched. The body has
    been read; the transaction runs whole in one worker-thread call, within a
    database slot taken only for it (``run_admitted``).
    """

    def open_and_answer() -> JSONResponse:
        with context.database.transaction() as session:
            holder = service.open_followup(
                session,
                body.receipt,
                receipt_pepper=context.secrets.receipt_pepper,
                key_integrity_key=context.secrets.key_integrity_key,
                flag_duress=context.settings.duress_flags_report,
            )
            if holder is None:
                return JSONResponse(UNKNOWN_RECEIPT, status_code=401)
            return answer(session, holder, body)

    return await run_admitted(request, open_and_answer)


@router.post("/followup", responses=error_responses(401))
async def followup(request: Request, context: Context, body: JsonBody[ReceiptRequest]) -> JSONResponse:
    return await answer_receipt_holder(
        request,
        context,
        body,
        lambda _session, holder, _body: JSONResponse(service.followup_view(holder).model_dump(mode="json")),
    )


@router.post("/followup/messages", status_code=201, responses=error_responses(401))
async def followup_message(
    request: Request, context: Context, body: JsonBody[FollowupMessageRequest]
) -> JSONResponse:
    def send(session: Session, holder: service.FollowupHolder, body: FollowupMessageRequest) -> JSONResponse:
        if isinstance(holder, duress.DuressHolder):
            duress.record_message(holder)  # answered as sent; it goes nowhere (app.intake.duress)
            return JSONResponse({"status": TipStatus.NEW}, status_code=201)
        service.add_message(
            session, holder.tip, body.body, author=MessageAuthor.SUBMITTER, server_secrets=context.secrets
        )
        return JSONResponse({"status": holder.tip.status}, status_code=201)

    return await answer_receipt_holder(request, context, body, send)
