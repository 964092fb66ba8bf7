"""What a submitter may send. Unknown fields are refused; nothing privileged is accepted."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.intake.taxonomy import COUNTRY_CODES, Language, Tactic

NARRATIVE_MAX_CHARS = 20_000
MESSAGE_MAX_CHARS = 20_000


def _iso_country(code: str) -> str:
    upper = code.upper()
    if upper not in COUNTRY_CODES:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return upper


def _unique_tactics(tactics: list[Tactic]) -> list[Tactic]:
    return list(dict.fromkeys(tactics))


CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2), AfterValidator(_iso_country)]


class TipSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    narrative: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=NARRATIVE_MAX_CHARS)]
    language: Language = Language.ENGLISH
    tactics: Annotated[list[Tactic], Field(max_length=len(Tactic)), AfterValidator(_unique_tactics)] = []
    host_country: CountryCode | None = None
    host_city: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    urgent: bool = False
    station_id: uuid.UUID | None = None

    def answers(self) -> dict[str, object]:
        """Everything but the narrative and the urgency flag: encrypted as one field."""
        return {
            "language": self.language.value,
            "tactics": [tactic.value for tactic in self.tactics],
            "host_country": self.host_country,
            "host_city": self.host_city or None,
            "station_id": str(self.station_id) if self.station_id else None,
        }


class ReceiptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Any JSON value: a number, null or a novel counts as a receipt that
    # matches nothing (401 like every other), not as a validation error.
    receipt: object


class FollowupMessageRequest(ReceiptRequest):
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                           max_length=MESSAGE_MAX_CHARS)]


class TipReceipt(BaseModel):
    receipt: str


class FollowupMessage(BaseModel):
    author: str
    sent_on: str
    # The submitter's own messages are sealed to the organisation only: a
    # seized receipt does not reveal what the submitter wrote.
    body: str | None


class FollowupView(BaseModel):
    status: str
    messages: list[FollowupMessage]
