from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.cases.models import CaseStatus
from app.intake.schemas import CountryCode
from app.kit.taxonomy import Tactic
from app.stations.models import Confidence, LinkRelation

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]


def _unique(values: list[Tactic]) -> list[Tactic]:
    return list(dict.fromkeys(values))


class CaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: Title
    summary: LongText = ""
    tip_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=100)]
    tactics: Annotated[list[Tactic], Field(max_length=len(Tactic)), AfterValidator(_unique)] = []
    host_country: CountryCode | None = None
    restricted: bool = False


class CaseTipAdd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tip_id: uuid.UUID


class CaseMemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: uuid.UUID


class CaseStatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    status: CaseStatus
    resolution_note: LongText | None = None


class CaseRestriction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    restricted: bool


class CaseNoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]


class CaseSummary(BaseModel):
    id: uuid.UUID
    ref: str
    title: str
    status: str
    restricted: bool
    tactics: list[str]
    host_country: str | None
    tip_count: int
    created_on: dt.date


class CaseTipView(BaseModel):
    id: uuid.UUID
    ref: str
    status: str
    received_on: dt.date


class CaseNoteView(BaseModel):
    id: uuid.UUID
    author: str | None
    written_on: dt.date
    body: str


class CaseEventView(BaseModel):
    action: str
    actor: str | None
    detail: str | None
    happened_on: dt.date


class StationLinkView(BaseModel):
    id: uuid.UUID
    station_id: uuid.UUID
    station: str
    relation: str
    confidence: str
    evidence: str
    proposed_by: str | None
    confirmed: bool


class StationLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    station_id: uuid.UUID
    relation: LinkRelation
    confidence: Confidence
    evidence: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)] = ""


class CaseDetail(CaseSummary):
    summary: str
    resolution_note: str | None
    closed_on: dt.date | None
    tips: list[CaseTipView]
    members: list[str]
    notes: list[CaseNoteView]
    timeline: list[CaseEventView]
    station_links: list[StationLinkView] = []
