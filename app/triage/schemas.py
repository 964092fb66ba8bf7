from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel


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


class QueuePage(BaseModel):
    items: list[QueueItem]


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
    attachments: list[AttachmentSummary]
    messages: list[StaffMessage]
