"""Referral pages of the staff UI (plain forms; no script): the recipients registry, building a
referral from a case, its preview, approval, revocation and the bundle's download. Every rule is
in app.referrals.service, .recipients and .content.

Included before the case pages' router, whose ``/cases/{case_id}/{action}`` would otherwise
answer ``/cases/{case_id}/referrals``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.audit_log.signer import SigningRefused, local_signer, log_verifier
from app.auth.deps import CaseWorker, Lead
from app.auth.permissions import Permission
from app.auth.principal import Principal
from app.cases.reading import read_case
from app.crypto.errors import DecryptionError
from app.kit.errors import AppError, IntegrityFailure, InvalidInput
from app.referrals import recipients as registry
from app.referrals import service
from app.referrals.content import REPORT_FIELDS, ReportSelection, Selection, clean_redactions, report_choices
from app.referrals.models import RecipientKind
from app.web.context import AppContext, Context, DbSession
from app.web.forms import read_form, read_form_lists, uuid_field
from app.web.pages import render_staff_page

router = APIRouter()


def _step(session: Session, change: Callable[[], str], refused: Callable[[AppError], Response]) -> Response:
    """One change inside a savepoint (a refused one leaves nothing), then to the page it names;
    a refusal shows the page again with the reason and the refusal's status."""
    try:
        with session.begin_nested():
            done = change()
    except DecryptionError:
        raise IntegrityFailure from None
    except IntegrityFailure:
        raise
    except AppError as exc:
        return refused(exc)
    return RedirectResponse(done, status_code=303)


async def _in_worker(
    session: Session, change: Callable[[], str], refused: Callable[[AppError], Response]
) -> Response:
    """`_step`, in a worker thread (it decrypts, reads files and may sign a checkpoint)."""
    return await run_in_threadpool(_step, session, change, refused)


def sign_if_held(session: Session, context: AppContext) -> None:
    """A checkpoint over every event so far (the approval's included), in this transaction, when
    this process holds the audit signing key. A refusal (the stored log does not extend what was
    signed) leaves the approval standing: the signer's own run records the alert, and the bundle
    waits for a checkpoint."""
    signer = local_signer(context.settings, context.secrets)
    if signer is None:
        return
    with contextlib.suppress(SigningRefused):
        signer.sign_pending(session)


def sealing_context(context: AppContext) -> service.SealingContext:
    return service.SealingContext(
        blobs=context.blobs,
        server_secrets=context.secrets,
        log_key=log_verifier(context.settings, context.secrets),
        witnesses_required=context.settings.audit_witnesses_required,
        sender=context.settings.audit_log_origin,
    )


# --- Recipients -----------------------------------------------------------------------------------


def _recipients_page(
    request: Request,
    principal: Principal,
    session: Session,
    *,
    error: str | None = None,
    status_code: int = 200,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    try:
        recipients = registry.recipient_views(session, principal)
    except DecryptionError:
        raise IntegrityFailure from None
    return render_staff_page(
        request,
        "staff/referral_recipients.html",
        principal=principal,
        recipients=recipients,
        kinds=list(RecipientKind),
        typed=typed or {},
        error=error,
        status_code=status_code,
    )


def _recipients_refused(
    request: Request, principal: Principal, session: Session, typed: dict[str, str] | None = None
) -> Callable[[AppError], Response]:
    """The recipients page again, with why a change was refused (and what was typed)."""
    return lambda exc: _recipients_page(
        request, principal, session, error=exc.public_message, status_code=exc.status, typed=typed
    )


@router.get("/referrals/recipients", response_class=HTMLResponse)
def recipients_page(request: Request, principal: Lead, session: DbSession) -> HTMLResponse:
    return _recipients_page(request, principal, session)


@router.post("/referrals/recipients", response_class=HTMLResponse)
async def add_recipient_form(
    request: Request, principal: Lead, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def add() -> str:
        try:
            kind = RecipientKind(fields.get("kind", ""))
        except ValueError:
            raise InvalidInput("Choose the kind of recipient.") from None
        registry.add_recipient(
            session,
            principal,
            name=fields.get("name", ""),
            contact=fields.get("contact", ""),
            kind=kind,
            public_key_text=fields.get("public_key", ""),
            server_secrets=context.secrets,
        )
        return "/referrals/recipients"

    typed = {name: fields.get(name, "")[:4000] for name in ("name", "contact", "kind", "public_key")}
    return await _in_worker(session, add, _recipients_refused(request, principal, session, typed))


@router.post("/referrals/recipients/{recipient_id}/confirm", response_class=HTMLResponse)
async def confirm_recipient_form(
    recipient_id: uuid.UUID, request: Request, principal: Lead, session: DbSession, context: Context
) -> Response:
    fields = await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def confirm() -> str:
        registry.confirm_recipient(
            session,
            principal,
            recipient_id,
            fingerprint=fields.get("fingerprint", ""),
            integrity_key=context.secrets.key_integrity_key,
        )
        return "/referrals/recipients"

    return await _in_worker(session, confirm, _recipients_refused(request, principal, session))


@router.post("/referrals/recipients/{recipient_id}/retire", response_class=HTMLResponse)
async def retire_recipient_form(
    recipient_id: uuid.UUID, request: Request, principal: Lead, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def retire() -> str:
        registry.retire_recipient(
            session, principal, recipient_id, integrity_key=context.secrets.key_integrity_key
        )
        return "/referrals/recipients"

    return await _in_worker(session, retire, _recipients_refused(request, principal, session))


# --- Building a referral from a case --------------------------------------------------------------


def _new_referral_page(
    request: Request,
    principal: Principal,
    session: Session,
    context: AppContext,
    case_id: uuid.UUID,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        case = read_case(session, principal, case_id)
        choices = report_choices(session, principal, case, context.secrets.key_integrity_key)
        recipients = registry.recipient_views(session, principal, usable_only=True)
    except DecryptionError:
        raise IntegrityFailure from None
    return render_staff_page(
        request,
        "staff/referral_new.html",
        principal=principal,
        case=case,
        choices=choices,
        recipients=recipients,
        report_fields=REPORT_FIELDS,
        error=error,
        status_code=status_code,
    )


@router.get("/cases/{case_id}/referrals/new", response_class=HTMLResponse)
def new_referral_page(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> HTMLResponse:
    return _new_referral_page(request, principal, session, context, case_id)


def _ids(values: list[str], what: str) -> tuple[uuid.UUID, ...]:
    ids = [uuid_field(value, what) for value in values]
    return tuple(dict.fromkeys(value for value in ids if value is not None))


def selection_from_form(fields: dict[str, list[str]]) -> Selection:
    """The builder form: ``report`` ticks the reports; ``<tip id>.field``, ``<tip id>.file`` and
    ``<tip id>.redacted`` say what of each goes; ``redactions`` is one phrase per line."""
    reports = []
    for tip_id in _ids(fields.get("report", []), "report"):
        prefix = str(tip_id)
        chosen_fields = tuple(name for name in REPORT_FIELDS if name in fields.get(f"{prefix}.field", []))
        reports.append(
            ReportSelection(
                tip_id=tip_id,
                fields=chosen_fields,
                attachment_ids=_ids(fields.get(f"{prefix}.file", []), "file"),
                identifying_details_redacted=fields.get(f"{prefix}.redacted", [""])[0] == "yes",
            )
        )
    return Selection(
        recipient_ids=_ids(fields.get("recipient", []), "recipient"),
        reports=tuple(reports),
        station_link_ids=_ids(fields.get("station_link", []), "station link"),
        case_summary=fields.get("case_summary", [""])[0] == "yes",
        redactions=clean_redactions(fields.get("redactions", [""])[0].splitlines()),
        cover_note=fields.get("cover_note", [""])[0],
    )


@router.post("/cases/{case_id}/referrals", response_class=HTMLResponse)
async def propose_referral_form(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    fields = await read_form_lists(request, context.settings, csrf_token=principal.csrf_token)

    def propose() -> str:
        referral = service.propose(
            session,
            principal,
            case_id,
            selection_from_form(fields),
            blobs=context.blobs,
            server_secrets=context.secrets,
        )
        return f"/referrals/{referral.id}"

    return await _in_worker(
        session,
        propose,
        lambda exc: _new_referral_page(
            request, principal, session, context, case_id, error=exc.public_message, status_code=exc.status
        ),
    )


@router.get("/cases/{case_id}/referrals", response_class=HTMLResponse)
def case_referrals_page(
    case_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession
) -> HTMLResponse:
    case = read_case(session, principal, case_id)
    return render_staff_page(
        request,
        "staff/case_referrals.html",
        principal=principal,
        case=case,
        referrals=service.referrals_of_case(session, principal, case_id),
    )


# --- One referral: preview, approval, revocation, the bundle ----------------------------------------


def _referral_page(
    request: Request,
    principal: Principal,
    session: Session,
    context: AppContext,
    referral_id: uuid.UUID,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    try:
        view = service.read_referral(
            session,
            principal,
            referral_id,
            blobs=context.blobs,
            integrity_key=context.secrets.key_integrity_key,
        )
    except DecryptionError:
        raise IntegrityFailure from None
    except service.ContentChanged as changed:
        return render_staff_page(
            request,
            "staff/referral_changed.html",
            principal=principal,
            referral_id=referral_id,
            message=changed.public_message,
            status_code=409,
        )
    return render_staff_page(
        request,
        "staff/referral.html",
        principal=principal,
        referral=view,
        is_lead=principal.can(Permission.LEAD_TRIAGE),
        error=error,
        status_code=status_code,
    )


def _referral_refused(
    request: Request, principal: Principal, session: Session, context: AppContext, referral_id: uuid.UUID
) -> Callable[[AppError], Response]:
    """The referral's page again, with why a step was refused."""
    return lambda exc: _referral_page(
        request, principal, session, context, referral_id, error=exc.public_message, status_code=exc.status
    )


@router.get("/referrals/{referral_id}", response_class=HTMLResponse)
def referral_page(
    referral_id: uuid.UUID, request: Request, principal: CaseWorker, session: DbSession, context: Context
) -> HTMLResponse:
    return _referral_page(request, principal, session, context, referral_id)


@router.post("/referrals/{referral_id}/approve", response_class=HTMLResponse)
async def approve_referral_form(
    referral_id: uuid.UUID, request: Request, principal: Lead, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def approve() -> str:
        service.approve(session, principal, referral_id, blobs=context.blobs, server_secrets=context.secrets)
        # Signed now when this process holds the audit signing key, so that the bundle can be
        # sealed at once; otherwise the signer on its own host covers it within seconds.
        sign_if_held(session, context)
        return f"/referrals/{referral_id}"

    return await _in_worker(
        session, approve, _referral_refused(request, principal, session, context, referral_id)
    )


@router.post("/referrals/{referral_id}/revoke", response_class=HTMLResponse)
async def revoke_referral_form(
    referral_id: uuid.UUID, request: Request, principal: Lead, session: DbSession, context: Context
) -> Response:
    await read_form(request, context.settings, csrf_token=principal.csrf_token)

    def revoke() -> str:
        service.revoke(session, principal, referral_id)
        return f"/referrals/{referral_id}"

    return await _in_worker(
        session, revoke, _referral_refused(request, principal, session, context, referral_id)
    )


def bundle_file_name(referral_id: uuid.UUID) -> str:
    return f"referral-{referral_id.hex[:12]}.daylight-referral"


@router.get("/referrals/{referral_id}/bundle", response_class=StreamingResponse)
def download_bundle(
    referral_id: uuid.UUID, principal: CaseWorker, session: DbSession, context: Context
) -> Response:
    referral, chunks = service.download(session, principal, referral_id, sealing_context(context))
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{bundle_file_name(referral.id)}"',
            "Content-Length": str(referral.bundle_size),
        },
    )
