from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.intake.models import RejectionReason, TipStatus
from app.kit.taxonomy import Language, Tactic


class QueueSummary(BaseModel):
    """What a key holder's queue shows of a report's content, decrypted for the page only."""

    language: str
    tactics: list[str]
    host_country: str | None
    host_city: str | None
    station_id: uuid.UUID | None
    excerpt: str


class QueueItem(BaseModel):
    """Queue metadata (workflow state), and for a key holder the report's summary."""

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
    # The newest message from the submitter, by day (None: they have written none since the report).
    submitter_wrote_on: dt.date | None = None
    summary: QueueSummary | None = None


class QueuePage(BaseModel):
    items: list[QueueItem]
    # Opaque keyset cursor of the next page; None on the last page.
    next_cursor: str | None
    # Tips per status among those the caller may see, filters other than status applied.
    counts: dict[str, int]
    # Reports the caller can read still waiting for the keyed indexes after this page's batch:
    # filters and search do not find them yet.
    unindexed: int = 0
    # With a search: how many reports matched (the page shows the best ranked of them).
    matches: int | None = None


class QueueSort(StrEnum):
    URGENCY = "urgency"  # urgent first, then oldest
    OLDEST = "oldest"
    NEWEST = "newest"
    ACTIVITY = "activity"  # most recent activity first


class QueueFilters(BaseModel):
    """What the queue may be narrowed by. Language, tactic, country and station go through the
    keyed blind index, a search through the keyed search index."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: TipStatus | None = None
    assignee: uuid.UUID | None = None
    mine: bool = False
    unassigned: bool = False
    urgent: bool | None = None
    tactic: Tactic | None = None
    country: Annotated[str, StringConstraints(min_length=2, max_length=2, to_upper=True)] | None = None
    language: Language | None = None
    station: uuid.UUID | None = None
    label: uuid.UUID | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    sort: QueueSort = QueueSort.URGENCY
    # Each report's summary (language, tactics, place, an excerpt) for a key holder. The API
    # answers without content unless asked (DESIGN 8: the queue is metadata); the page asks.
    summaries: bool = False
    cursor: Annotated[str, StringConstraints(max_length=200)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


def filters_from_query(query: Mapping[str, str]) -> QueueFilters:
    """The filters a query string gives (ValidationError for one not understood): empty fields
    mean "any", and `view` (which saved view the page came from) chooses no report."""
    chosen = {name: value for name, value in query.items() if value != "" and name != "view"}
    return QueueFilters.model_validate(chosen)


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
    # Why a document was stored as sent ("encrypted", "took too long", "too large to clean"…);
    # None for files of kinds the service does not clean (recordings, videos) and cleaned ones.
    not_cleaned: str | None = None


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
    # In which form it may be passed on (ReferralForm); None: not said, which means without
    # identifying details.
    referral_form: str | None = None
    duplicate_of: uuid.UUID | None
    verification_proposed_by: str | None
    # The day a duress code of this report was first used (app.intake.duress), when the
    # organisation asked to be told: the submitter may be under duress, and replies are stopped.
    duress_flagged_on: dt.date | None = None
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
