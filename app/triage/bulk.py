"""One workflow step on many reports at once: all of them or none.

Each report goes through the same service step as on its own page (claim, assign, label, reject
as a duplicate), so each is checked and audited per report exactly as there. The caller runs the
whole batch in one savepoint: the first refusal undoes every step before it, and the refusal
names the report that stopped it.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.principal import Principal
from app.cases.repository import tips_visible_to
from app.intake.models import RejectionReason, Tip
from app.kit.errors import AppError, InvalidInput
from app.triage import labelling, workflow

MAX_BULK_REPORTS = 200


class BulkAction(StrEnum):
    CLAIM = "claim"
    ASSIGN = "assign"
    LABEL = "label"
    REJECT_DUPLICATE = "reject_duplicate"


class BulkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: BulkAction
    tip_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_BULK_REPORTS)]
    assignee_id: uuid.UUID | None = None
    label_id: uuid.UUID | None = None
    duplicate_of: uuid.UUID | None = None


class BulkStepRefused(AppError):
    """A refusal of one report's step, naming the report: nothing of the batch was done."""

    def __init__(self, ref: str, refusal: AppError) -> None:
        super().__init__(
            f"Nothing was changed: report {ref} refused the step. {refusal.public_message}", code=refusal.code
        )
        self.status = refusal.status


def _required(value: uuid.UUID | None, what: str, field: str) -> uuid.UUID:
    if value is None:
        raise InvalidInput(
            f"Choose {what}.", fields=[{"field": field, "message": "required for this action"}]
        )
    return value


def apply(session: Session, principal: Principal, request: BulkRequest) -> int:
    """Run the step on every report; returns how many. Call inside a savepoint."""
    tip_ids = sorted(set(request.tip_ids))
    # Every report's row lock first, in one order, before any step appends to the audit log
    # (row locks before the audit append, as in every writer): two batches over the same
    # reports queue instead of deadlocking.
    locked = tips_visible_to(principal).where(Tip.id.in_(tip_ids)).order_by(Tip.id).with_for_update()
    refs = {tip.id: tip.ref for tip in session.scalars(locked)}
    for tip_id in tip_ids:
        try:
            if tip_id not in refs:
                raise InvalidInput(
                    "A chosen report was not found.", fields=[{"field": "tip_ids", "message": str(tip_id)}]
                )
            _step(session, principal, request, tip_id)
        except BulkStepRefused:
            raise
        except AppError as refusal:
            raise BulkStepRefused(refs.get(tip_id, "?"), refusal) from None
    audit.record(
        session, principal.actor, "tips.bulk", details={"action": request.action.value, "count": len(tip_ids)}
    )
    return len(tip_ids)


def _step(session: Session, principal: Principal, request: BulkRequest, tip_id: uuid.UUID) -> None:
    if request.action is BulkAction.CLAIM:
        workflow.claim(session, principal, tip_id)
    elif request.action is BulkAction.ASSIGN:
        assignee = _required(request.assignee_id, "whom to assign to", "assignee_id")
        workflow.assign(session, principal, tip_id, assignee)
    elif request.action is BulkAction.LABEL:
        labelling.label_tip(session, principal, tip_id, _required(request.label_id, "a label", "label_id"))
    else:
        original = _required(request.duplicate_of, "the report they duplicate", "duplicate_of")
        workflow.reject(session, principal, tip_id, RejectionReason.DUPLICATE, original)


def tip_id_by_ref(session: Session, principal: Principal, ref: str) -> uuid.UUID | None:
    """A report the caller may see, by the reference shown in the queue (R-… as typed)."""
    wanted = ref.strip().upper()
    if not wanted:
        return None
    return session.scalar(tips_visible_to(principal).with_only_columns(Tip.id).where(Tip.ref == wanted))
