"""The submitter's JSON API (DESIGN 8). Every route here is public by design."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.errors import AppError, InvalidInput, UnsupportedMediaType, error_body
from app.intake import service
from app.intake.models import MessageAuthor
from app.intake.schemas import FollowupMessageRequest, ReceiptRequest, TipReceipt, TipSubmission
from app.web.context import AppContext, Context, DbSession
from app.web.multipart import StreamingFormReader
from app.web.request_body import (
    MalformedBody,
    bounded_stream,
    media_type,
    read_bounded_body,
    read_json,
    validate_model,
)

router = APIRouter(prefix="/api/v1")

# One answer for every receipt that opens nothing, malformed or not.
UNKNOWN_RECEIPT = error_body("unknown_receipt", "No report matches this receipt.")
SINGLE_VALUE_FIELDS = ("narrative", "language", "host_country", "host_city", "urgent", "station_id")
FORM_FIELDS = frozenset({*SINGLE_VALUE_FIELDS, "tactics"})


class ServiceBusy(AppError):
    status = 503
    code = "busy"
    public_message = "Too many reports are being sent right now. Please try again in a minute."


class InvalidSubmission(InvalidInput):
    """A form submission that failed validation; carries what was typed, to show it again."""

    def __init__(self, fields: list[dict[str, str]], typed: dict[str, Any]) -> None:
        super().__init__(fields=fields)
        self.typed = typed


def _form_to_submission(fields: dict[str, list[str]]) -> TipSubmission:
    data: dict[str, Any] = {}
    for name, values in fields.items():
        if name == "tactics":
            data["tactics"] = [value for value in values if value]
        elif name in SINGLE_VALUE_FIELDS and len(values) == 1:
            # An empty optional answer means "prefer not to say"; an empty
            # narrative stays empty, so that it is refused as empty.
            data[name] = values[0] if values[0] != "" or name == "narrative" else None
        else:
            data[name] = values  # unknown or repeated: refused by validation below
    if data.get("urgent") is None:
        data.pop("urgent", None)
    try:
        return validate_model(TipSubmission, data)
    except InvalidInput as exc:
        typed: dict[str, Any] = {name: values[0] for name, values in fields.items() if len(values) == 1}
        typed["tactics"] = fields.get("tactics", [])
        raise InvalidSubmission(exc.fields, typed) from None


async def receive_urlencoded_tip(request: Request, session: Session, context: AppContext) -> str:
    """A form posted without files (a browser may send these urlencoded)."""
    body = await read_bounded_body(request, context.settings)
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise MalformedBody("The form data could not be read.") from None
    submission = _form_to_submission(fields)
    draft = await run_in_threadpool(service.start_tip, session, context.secrets)
    return await run_in_threadpool(service.finish_tip, session, draft, submission)


async def receive_form_tip(request: Request, session: Session, context: AppContext) -> str:
    kind = media_type(request)
    if kind == "multipart/form-data":
        return await receive_multipart_tip(request, session, context)
    if kind == "application/x-www-form-urlencoded":
        return await receive_urlencoded_tip(request, session, context)
    raise UnsupportedMediaType("Send multipart/form-data.")


def _start_draft(context: AppContext) -> service.TipDraft:
    # Its own short transaction: the request's transaction must not be open
    # (holding a pooled connection, and SQLite's write lock) while a client
    # takes minutes to upload, or a few slow clients would stall everyone.
    with context.database.transaction() as lookup:
        return service.start_tip(lookup, context.secrets)


async def receive_multipart_tip(request: Request, session: Session, context: AppContext) -> str:
    """Stream a multipart submission: files are encrypted to disk as they arrive.

    The request's database session is first used after the last byte has
    arrived; until then only the blob cleanup is registered on it.
    """
    settings = context.settings
    if context.upload_slots.locked():
        raise ServiceBusy
    async with context.upload_slots:
        draft = await run_in_threadpool(_start_draft, context)
        reader = StreamingFormReader(
            request.headers["content-type"],
            file_field="files",
            text_fields=FORM_FIELDS,
            open_file=lambda content_type: draft.open_attachment(
                session, context.blobs, max_bytes=settings.max_file_bytes, content_type=content_type),
            max_field_bytes=settings.max_json_bytes,
            max_files=settings.max_files_per_tip,
            max_parts=settings.max_form_parts,
        )
        try:
            async for chunk in bounded_stream(request, settings.max_request_bytes,
                                              idle_timeout=settings.request_idle_timeout_seconds):
                await run_in_threadpool(reader.feed, chunk)
            reader.finish()
        finally:
            for writer in draft.attachments:
                writer.abort()
    submission = _form_to_submission(reader.fields)
    return await run_in_threadpool(service.finish_tip, session, draft, submission)


@router.post("/tips", status_code=201, response_model=TipReceipt)
async def submit_tip(request: Request, session: DbSession, context: Context) -> TipReceipt:
    kind = media_type(request)
    if kind == "multipart/form-data":
        receipt = await receive_multipart_tip(request, session, context)
    elif kind == "application/json":
        submission = await read_json(request, TipSubmission, context.settings)
        draft = await run_in_threadpool(service.start_tip, session, context.secrets)
        receipt = await run_in_threadpool(service.finish_tip, session, draft, submission)
    else:
        raise UnsupportedMediaType
    return TipReceipt(receipt=receipt)


ReceiptBody = TypeVar("ReceiptBody", bound=ReceiptRequest)


async def answer_receipt_holder(
    request: Request, session: Session, context: AppContext, model: type[ReceiptBody],
    answer: Callable[[service.ReceiptHolder, ReceiptBody], JSONResponse],
) -> JSONResponse:
    """Read a receipt-bearing body, open the tip it names and answer; the same 401 otherwise.

    The 401 is returned, not raised, like every answer here: the request's
    transaction ends the same way whether or not the receipt matched.
    """
    body = await read_json(request, model, context.settings)

    def open_and_answer() -> JSONResponse:
        holder = service.tip_for_receipt(session, body.receipt,
                                         receipt_pepper=context.secrets.receipt_pepper)
        if holder is None:
            return JSONResponse(UNKNOWN_RECEIPT, status_code=401)
        return answer(holder, body)

    return await run_in_threadpool(open_and_answer)


@router.post("/followup")
async def followup(request: Request, session: DbSession, context: Context) -> JSONResponse:
    return await answer_receipt_holder(
        request, session, context, ReceiptRequest,
        lambda holder, _body: JSONResponse(service.followup_view(holder).model_dump(mode="json")))


@router.post("/followup/messages", status_code=201)
async def followup_message(request: Request, session: DbSession, context: Context) -> JSONResponse:
    def send(holder: service.ReceiptHolder, body: FollowupMessageRequest) -> JSONResponse:
        service.add_message(session, holder.tip, body.body, author=MessageAuthor.SUBMITTER,
                            server_secrets=context.secrets)
        return JSONResponse({"status": holder.tip.status}, status_code=201)

    return await answer_receipt_holder(request, session, context, FollowupMessageRequest, send)
