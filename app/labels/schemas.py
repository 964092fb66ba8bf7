from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field


class LabelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Bounded here; trimmed and checked (1 to 64 characters, nothing invisible) by the service.
    name: str = Field(max_length=256)


class LabelAttach(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label_id: uuid.UUID


class LabelOut(BaseModel):
    """A label, its name decrypted for the caller."""

    id: uuid.UUID
    name: str
    retired: bool


class LabelSummary(LabelOut):
    """A label as its list shows it, with how many of the reports and cases the caller may see
    carry it."""

    reports: int
    cases: int
