"""Witnesses over the staff API: registration (admins), and the two calls a witness makes.

A witness (`daylight audit witness`, on an auditor's or partner's machine) fetches the newest
checkpoint with a consistency proof from the size it last saw, in exactly the body of a C2SP
tlog-witness ``add-checkpoint`` request; it checks both against its own memory, and posts its
cosignature back. It authenticates with its bearer token (issued once at registration) or an
auditor's session. The server never decides what a witness remembers: a rewritten log gets a
refusal on the witness's machine, not here.
"""

from __future__ import annotations

import base64
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from app.audit.routes_api import log_key
from app.audit_log import events as audit
from app.audit_log import service
from app.audit_log.proofs import ProofUnavailable, consistency_between
from app.audit_log.witness import build_add_checkpoint_request
from app.audit_log.witnesses import (
    CosignatureRejected,
    WitnessRegistrationError,
    register_witness,
    registered_witnesses,
    revoke_witness,
    store_cosignatures,
    witness_for_token,
    witnessing,
)
from app.auth.deps import AccountAdmin, Auditor, CurrentStaff, current_principal
from app.auth.permissions import Permission, role_has
from app.kit.errors import Forbidden, InvalidInput, NotFound, Unauthenticated, error_responses
from app.web.context import Context, DbSession
from app.web.json_body import JsonBody

router = APIRouter(prefix="/api/v1/audit", responses=error_responses(401, 403, 404, 422, 500, 503, 507))

# Sizes and sequence numbers are 32-bit integer columns; larger ones name nothing (and would
# overflow a PostgreSQL parameter: a 500 instead of a 404 or 422).
MAX_SIZE = 2**31 - 1


def witness_or_auditor(request: Request, session: DbSession, context: Context) -> audit.Actor:
    """A registered witness by its bearer token, else an auditor's session (cookie)."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer":
        witness = witness_for_token(session, token.strip(), context.secrets.key_integrity_key)
        if witness is None:
            raise Unauthenticated
        return audit.Actor(id=witness.row.id, username=witness.row.name[:64], role="witness")
    principal = current_principal(request, session, context)
    if not role_has(principal.role, Permission.READ_AUDIT_LOG):
        raise Forbidden
    return principal.actor


WitnessCaller = Annotated[audit.Actor, Depends(witness_or_auditor)]


@router.get("/consistency")
def consistency(
    _auditor: Auditor,
    session: DbSession,
    first: Annotated[int, Query(ge=0, le=MAX_SIZE)],
    second: Annotated[int, Query(ge=0, le=MAX_SIZE)],
) -> dict[str, Any]:
    """RFC 9162 §2.1.4 consistency proof between two tree sizes up to the newest checkpoint."""
    try:
        proof = consistency_between(session, first, second)
    except ProofUnavailable as exc:
        raise NotFound(str(exc)) from None
    return {"first": first, "second": second, "proof": [base64.b64encode(node).decode() for node in proof]}


# The tlog-witness request body, as text.
ADD_CHECKPOINT_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}
}


@router.get("/witness/add-checkpoint", response_class=Response, responses=ADD_CHECKPOINT_CONTENT)
def add_checkpoint_request(
    _caller: WitnessCaller,
    session: DbSession,
    old: Annotated[int, Query(ge=0, le=MAX_SIZE)] = 0,
) -> PlainTextResponse:
    """The newest checkpoint with a consistency proof from ``old`` (the size the witness last
    cosigned). When ``old`` is larger than the newest checkpoint no proof can exist: the body
    then carries none and the witness sees the rollback for itself."""
    latest = service.latest_checkpoint(session)
    if latest is None:
        raise NotFound("No checkpoint has been signed yet.")
    proof: list[bytes] = []
    if old <= latest.tree_size:
        try:
            proof = consistency_between(session, old, latest.tree_size)
        except ProofUnavailable:
            proof = []  # the witness refuses the missing proof, with evidence
    return PlainTextResponse(build_add_checkpoint_request(old, proof, latest.signed_note))


class CosignatureUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tree_size: int = Field(ge=1, le=MAX_SIZE)
    # One or more C2SP note signature lines, as a tlog-witness answers add-checkpoint.
    cosignatures: str = Field(min_length=1, max_length=20_000)


@router.post("/witness/cosignatures", status_code=201)
def add_cosignatures(
    caller: WitnessCaller, session: DbSession, context: Context, body: JsonBody[CosignatureUpload]
) -> dict[str, Any]:
    trusted, _ = registered_witnesses(session, context.secrets.key_integrity_key)
    try:
        names = store_cosignatures(
            session,
            tree_size=body.tree_size,
            text=body.cosignatures,
            log_key=log_key(context),
            witnesses=trusted,
        )
    except CosignatureRejected as exc:
        raise InvalidInput(str(exc)) from None
    audit.record(
        session,
        caller,
        "audit.cosign",
        object_type="checkpoint",
        object_id=body.tree_size,
        details={"witnesses": ",".join(names)},
    )
    return {"tree_size": body.tree_size, "cosigned_by": names}


class WitnessRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # `daylight audit witness-keygen` prints it: <name>+<key id>+<base64 key>, type 0x04.
    verifier_key: str = Field(min_length=10, max_length=300)


def witnesses_view(session: DbSession, context: Context) -> list[dict[str, Any]]:
    trusted, forged = registered_witnesses(session, context.secrets.key_integrity_key, include_revoked=True)
    cosigned = witnessing(
        session,
        log_key(context),
        [w.key for w in trusted if w.row.revoked_at is None],
        context.settings.audit_witnesses_required,
    ).last_cosigned
    valid = {w.row.id for w in trusted}
    rows = [w.row for w in trusted] + forged
    return [
        {
            "id": str(row.id),
            "name": row.name,
            "verifier_key": row.verifier_key,
            "registered_at": audit.format_time(row.registered_at),
            "registered_by": row.registered_by,
            "revoked": row.revoked_at is not None,
            "last_cosigned_size": cosigned.get(row.name) if row.id in valid else None,
            # A row written by someone without the server's key: never counted, shown as an alarm.
            "registration_valid": row.id in valid,
        }
        for row in rows
    ]


def admin_or_auditor(principal: CurrentStaff) -> None:
    if not (
        role_has(principal.role, Permission.READ_AUDIT_LOG)
        or role_has(principal.role, Permission.MANAGE_ACCOUNTS)
    ):
        raise Forbidden


@router.get("/witnesses", dependencies=[Depends(admin_or_auditor)])
def list_witnesses(session: DbSession, context: Context) -> dict[str, Any]:
    return {"items": witnesses_view(session, context), "required": context.settings.audit_witnesses_required}


@router.post("/witnesses", status_code=201)
def add_witness(
    admin: AccountAdmin, session: DbSession, context: Context, body: JsonBody[WitnessRegistration]
) -> dict[str, Any]:
    """Register a witness; the answer carries its bearer token, shown this once only."""
    try:
        witness, token = register_witness(
            session,
            verifier_key=body.verifier_key,
            integrity_key=context.secrets.key_integrity_key,
            registered_by=admin.username,
        )
    except WitnessRegistrationError as exc:
        raise InvalidInput(str(exc)) from None
    audit.record(session, admin.actor, "audit.witness_add", object_type="witness", object_id=witness.id)
    return {"id": str(witness.id), "name": witness.name, "verifier_key": witness.verifier_key, "token": token}


@router.delete("/witnesses/{witness_id}", status_code=204)
def remove_witness(admin: AccountAdmin, session: DbSession, witness_id: uuid.UUID) -> Response:
    if revoke_witness(session, witness_id) is None:
        raise NotFound("No such witness.")
    audit.record(session, admin.actor, "audit.witness_revoke", object_type="witness", object_id=witness_id)
    return Response(status_code=204)
