from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.intake.models import RejectionReason, TipStatus
from app.kit.taxonomy import Tactic


class QueueItem(BaseModel):
    """Queue metadata: workflow state only, never content."""

    id: uuid.UUID
    ref: str
    status: str
    urgent: bool
    received_on: dt.date
    last_activity_on: dt.date
    attachment_count: int
    message_count: int
    assignee: str | None
    verification_proposed: bool
    submitter_activity: bool
    rejection_reason: str | None


class QueuePage(BaseModel):
    items: list[QueueItem]
    # Opaque keyset cursor of the next page; None on the last page.
    next_cursor: str | None
    # Tips per status among those the caller may see, filters other than status applied.
    counts: dict[str, int]


class QueueFilters(BaseModel):
    """What the queue may be narrowed by. Tactic and country go through the keyed blind index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: TipStatus | None = None
    assignee: uuid.UUID | None = None
    mine: bool = False
    unassigned: bool = False
    urgent: bool | None = None
    tactic: Tactic | None = None
    country: Annotated[str, StringConstraints(min_length=2, max_length=2, to_upper=True)] | None = None
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


class TipEventView(BaseModel):
    action: str
    from_status: str | None
    to_status: str | None
    actor: str | None
    detail: str | None
    happened_on: dt.date


class NoteView(BaseModel):
    id: uuid.UUID
    author: str | None
    written_on: dt.date
    body: str


class DuplicateCandidate(BaseModel):
    id: uuid.UUID
    ref: str
    status: str
    received_on: dt.date
    shared: list[str]


class AttachmentSummary(BaseModel):
    id: uuid.UUID
    size: int
    content_type: str | None
    added_on: dt.date
    # False: stored as sent, so it may still carry its author, device or location.
    metadata_removed: bool


class StaffMessage(BaseModel):
    id: uuid.UUID
    author: str
    sent_on: dt.date
    body: str


class TipDetail(QueueItem):
    narrative: str
    language: str
    tactics: list[str]
    host_country: str | None
    host_city: str | None
    station_id: uuid.UUID | None
    incident_month: int | None
    incident_year: int | None
    ongoing: bool
    perpetrators: list[str]
    contact_preference: str
    contact_details: str | None
    referral_consent: str | None
    duplicate_of: uuid.UUID | None
    verification_proposed_by: str | None
    attachments: list[AttachmentSummary]
    messages: list[StaffMessage]
    notes: list[NoteView]
    history: list[TipEventView]


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    assignee_id: uuid.UUID


class StaffMessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    # A question moves the tip to needs_info until the submitter answers.
    question: bool = False


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: RejectionReason
    duplicate_of: uuid.UUID | None = None


class NoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
