"""The auditor's API (DESIGN 8): events, verification, checkpoints, proofs and export.

The auditor sees actions, never content: events carry none.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log import service
from app.audit_log.assessment import LogAssessment, assess_log
from app.audit_log.checkpoint import VerifierKey, verifier_key
from app.audit_log.cosignature import WitnessKey
from app.audit_log.export import export_lines
from app.audit_log.merkle import inclusion_proof
from app.audit_log.models import AuditEvent
from app.audit_log.proofs import ProofUnavailable, prove_event
from app.audit_log.signer import SignerRun, SigningRefused, local_signer, log_verifier
from app.audit_log.witnesses import registered_witnesses
from app.auth.deps import Auditor
from app.auth.principal import Principal
from app.kit.errors import Conflict, NotFound, error_responses
from app.web.context import AppContext, Context, DbSession

router = APIRouter(prefix="/api/v1/audit", responses=error_responses(401, 403, 404, 409, 500, 503, 507))

MAX_PAGE = 1000


def event_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": audit.format_time(event.occurred_at),
        "actor_id": None if event.actor_id is None else str(event.actor_id),
        "actor": event.actor,
        "role": event.role,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "outcome": event.outcome,
        "details": event.details,
    }


def filtered_events(
    *,
    actor: str | None,
    action: str | None,
    object_id: str | None,
    since: dt.date | None,
    until: dt.date | None,
) -> Select[AuditEvent]:
    statement = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if actor:
        statement = statement.where(AuditEvent.actor == actor)
    if action:
        statement = statement.where(AuditEvent.action == action)
    if object_id:
        statement = statement.where(AuditEvent.object_id == object_id)
    if since:
        statement = statement.where(AuditEvent.occurred_at >= dt.datetime.combine(since, dt.time(), dt.UTC))
    if until:
        statement = statement.where(
            AuditEvent.occurred_at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)
        )
    return statement


@router.get("/events")
def list_events(
    _auditor: Auditor,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    object_id: Annotated[str | None, Query(max_length=64)] = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Newest first. Browsing is not itself audited: it reads actions, never content."""
    statement = filtered_events(actor=actor, action=action, object_id=object_id, since=since, until=until)
    return {"items": [event_view(event) for event in session.scalars(statement.limit(limit))]}


def log_key(context: AppContext) -> VerifierKey:
    return log_verifier(context.settings, context.secrets)


def witness_keys(session: Session, context: AppContext) -> list[WitnessKey]:
    trusted, _ = registered_witnesses(session, context.secrets.key_integrity_key)
    return [witness.key for witness in trusted]


def assess_now(session: Session, context: AppContext) -> LogAssessment:
    settings = context.settings
    return assess_log(
        session,
        log_key(context),
        max_unsigned=dt.timedelta(seconds=settings.audit_max_unsigned_seconds),
        witness_keys=witness_keys(session, context),
        witnesses_required=settings.audit_witnesses_required,
    )


def verify_now(session: Session, context: AppContext, auditor: Principal) -> LogAssessment:
    """Verify the whole log for an auditor, and record that they did (with the verdict)."""
    assessment = assess_now(session, context)
    audit.record(
        session,
        auditor.actor,
        "audit.verify",
        outcome=audit.Outcome.SUCCESS if assessment.ok else audit.Outcome.FAILURE,
        details={"size": assessment.report.size, "unsigned": assessment.coverage.unsigned},
    )
    return assessment


def assessment_view(assessment: LogAssessment) -> dict[str, Any]:
    report, covered = assessment.report, assessment.coverage
    return {
        "ok": assessment.ok,
        "size": report.size,
        "root": report.root.hex(),
        "checkpoints_checked": report.checkpoints_checked,
        "problems": assessment.all_problems,
        "first_bad_event": report.first_bad_seq,
        "signed_size": covered.signed_size,
        "unsigned_events": covered.unsigned,
        "oldest_unsigned_at": None
        if covered.oldest_unsigned_at is None
        else audit.format_time(covered.oldest_unsigned_at),
        "witnessed_size": assessment.witnessing.witnessed_size,
        "witnesses_required": assessment.witnessing.required,
        "summary": assessment.summary(),
    }


@router.get("/verify")
def verify(auditor: Auditor, session: DbSession, context: Context) -> dict[str, Any]:
    return assessment_view(verify_now(session, context, auditor))


def checkpoint_view(session: Session, context: AppContext) -> dict[str, Any]:
    latest = service.latest_checkpoint(session)
    if latest is None:
        raise NotFound("No checkpoint has been signed yet.")
    return {
        "tree_size": latest.tree_size,
        "root": latest.root_hash.hex(),
        "signed_note": latest.signed_note,
        "verifier_key": verifier_key(log_key(context).public_key, context.settings.audit_log_origin),
        "created_at": audit.format_time(latest.created_at),
    }


@router.get("/checkpoint")
def latest_checkpoint(_auditor: Auditor, session: DbSession, context: Context) -> dict[str, Any]:
    return checkpoint_view(session, context)


class SignerElsewhere(Conflict):
    code = "signer_elsewhere"
    public_message = "Checkpoints are signed by a signer on another host; it signs new events within seconds."


class SigningRefusedError(Conflict):
    code = "checkpoint_refused"
    public_message = (
        "The checkpoint signer refused: the stored log is not a consistent extension of what it "
        "signed before. An integrity alert was recorded."
    )


def sign_in_request(session: Session, context: AppContext) -> None:
    """Sign over every event so far (the caller's own event included) in the request's transaction."""
    signer = local_signer(context.settings, context.secrets)
    if signer is None:
        raise SignerElsewhere
    try:
        signer.sign_pending(session)
    except SigningRefused as refusal:
        # The request's transaction rolls back; the alert goes in one of its own.
        SignerRun(signer, context.database).sign_now()
        raise SigningRefusedError from refusal


@router.post("/checkpoints", status_code=201)
def sign_checkpoint_now(auditor: Auditor, session: DbSession, context: Context) -> dict[str, Any]:
    audit.record(session, auditor.actor, "audit.checkpoint")
    sign_in_request(session, context)
    return checkpoint_view(session, context)


@router.get("/events/{seq}/proof")
def event_proof(seq: int, _auditor: Auditor, session: DbSession) -> dict[str, Any]:
    latest = service.latest_checkpoint(session)
    if latest is None or not 1 <= seq <= latest.tree_size:
        raise NotFound("That event is not covered by a checkpoint yet.")
    proof = inclusion_proof(service.DatabaseNodeStore(session), seq - 1, latest.tree_size)
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "tree_size": latest.tree_size,
        "proof": [base64.b64encode(node).decode() for node in proof],
        "signed_note": latest.signed_note,
    }


@router.get("/events/{seq}/evidence")
def event_evidence(
    seq: Annotated[int, Path(ge=1, le=2**31 - 1)], _auditor: Auditor, session: DbSession, context: Context
) -> dict[str, Any]:
    """One event's offline proof (as `daylight audit prove`): the event, its inclusion proof and
    the newest witnessed checkpoint with its cosignatures; `daylight audit verify --proof` checks it."""
    try:
        return prove_event(
            session,
            seq,
            log_key(context),
            witness_keys(session, context),
            context.settings.audit_witnesses_required,
        )
    except ProofUnavailable as exc:
        raise NotFound(str(exc)) from None


# One JSON document a line: the header (with the verifier key), then every event with its proof.
EXPORT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}}}}
}


@router.get("/export", response_class=StreamingResponse, responses=EXPORT_CONTENT)
def export(auditor: Auditor, session: DbSession, context: Context) -> StreamingResponse:
    audit.record(session, auditor.actor, "audit.export")
    public_key_line = verifier_key(log_key(context).public_key, context.settings.audit_log_origin)

    def lines() -> Iterator[bytes]:
        # Its own read transaction: the request's has committed before streaming starts.
        with context.database.transaction() as reader:
            for line in export_lines(reader, public_key_line):
                yield (line + "\n").encode()

    filename = f"daylight-audit-{dt.datetime.now(dt.UTC):%Y%m%d}-{uuid.uuid4().hex[:6]}.jsonl"
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )
