"""What a submitter may send. Unknown fields are refused; nothing privileged is accepted."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.kit.taxonomy import (
    COUNTRY_CODES,
    ContactPreference,
    Language,
    Perpetrator,
    ReferralConsent,
    ReferralForm,
    Tactic,
)

NARRATIVE_MAX_CHARS = 20_000
MESSAGE_MAX_CHARS = 20_000
CITY_MAX_CHARS = 200
CONTACT_DETAILS_MAX_CHARS = 500
# The earliest year a report may name; reports reach back decades, not centuries.
EARLIEST_INCIDENT_YEAR = 1950


def _iso_country(code: str) -> str:
    upper = code.upper()
    if upper not in COUNTRY_CODES:
        raise ValueError("not an ISO 3166-1 alpha-2 country code")
    return upper


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _not_in_the_future(year: int) -> int:
    if year > dt.datetime.now(dt.UTC).year:
        raise ValueError("the year is in the future")
    return year


NUL_CHARACTER = "nul_character"


def _without_nul(text: str) -> str:
    """Refuses U+0000. Every other character is kept as sent (staff see invisible ones marked:
    app/web/visible_text.py), but NUL is no text: PostgreSQL's text type cannot hold it, and a C
    string downstream (a library, a PDF or spreadsheet reader) ends at it and drops what follows."""
    if "\x00" in text:
        # The error's type names the problem for the report form; its message quotes nothing.
        raise PydanticCustomError(NUL_CHARACTER, "the text holds a null character (U+0000)")
    return text


NoNul = AfterValidator(_without_nul)
CountryCode = Annotated[str, StringConstraints(min_length=2, max_length=2), AfterValidator(_iso_country)]


class TipSubmission(BaseModel):
    """A report. Every answer but the narrative is optional: "prefer not to say" is None (or [])."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    narrative: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NARRATIVE_MAX_CHARS), NoNul
    ]
    language: Language = Language.ENGLISH
    tactics: Annotated[list[Tactic], Field(max_length=len(Tactic)), AfterValidator(_unique)] = []
    host_country: CountryCode | None = None
    host_city: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=CITY_MAX_CHARS), NoNul] | None
    ) = None
    incident_month: Annotated[int, Field(ge=1, le=12)] | None = None
    incident_year: (
        Annotated[int, Field(ge=EARLIEST_INCIDENT_YEAR), AfterValidator(_not_in_the_future)] | None
    ) = None
    ongoing: bool = False
    perpetrators: Annotated[
        list[Perpetrator], Field(max_length=len(Perpetrator)), AfterValidator(_unique)
    ] = []
    station_id: uuid.UUID | None = None
    urgent: bool = False
    contact_preference: ContactPreference = ContactPreference.RECEIPT_ONLY
    contact_details: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=CONTACT_DETAILS_MAX_CHARS), NoNul]
        | None
    ) = Field(default=None, validate_default=True)
    referral_consent: ReferralConsent | None = None
    referral_form: ReferralForm | None = None

    @field_validator("contact_details")
    @classmethod
    def _contact_details_only_when_chosen(cls, details: str | None, info: ValidationInfo) -> str | None:
        preference = info.data.get("contact_preference")
        if preference is ContactPreference.OTHER_CHANNEL and not details:
            raise ValueError("say how to reach you, or choose the receipt only")
        if preference is ContactPreference.RECEIPT_ONLY:
            # Typed, then the submitter chose the receipt only: a way to reach them
            # that they took back is not kept anywhere.
            return None
        return details

    def answers(self) -> dict[str, object]:
        """Everything but the narrative and the urgency flag: encrypted as one field."""
        return {
            "language": self.language.value,
            "tactics": [tactic.value for tactic in self.tactics],
            "host_country": self.host_country,
            "host_city": self.host_city or None,
            "incident_month": self.incident_month,
            "incident_year": self.incident_year,
            "ongoing": self.ongoing,
            "perpetrators": [perpetrator.value for perpetrator in self.perpetrators],
            "station_id": str(self.station_id) if self.station_id else None,
            "contact_preference": self.contact_preference.value,
            "contact_details": self.contact_details,
            "referral_consent": self.referral_consent.value if self.referral_consent else None,
            "referral_form": self.referral_form.value if self.referral_form else None,
        }


class ReceiptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Any JSON value: a number, null or a novel counts as a receipt that
    # matches nothing (401 like every other), not as a validation error.
    receipt: object


class FollowupMessageRequest(ReceiptRequest):
    body: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MESSAGE_MAX_CHARS), NoNul
    ]


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
