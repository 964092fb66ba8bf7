"""The guided report form: its steps, its questions and what a posted form means.

The form works with JavaScript off. Each step is one page; what was answered
on the other steps travels along in hidden fields, so nothing is kept on the
server (or in a cookie) between steps, and nothing is lost when a step is
shown again with an error. Files are chosen on the last page (review), since
a browser cannot carry a chosen file from one page to the next.

Every question but the narrative can be left as "prefer not to say": an empty
single answer, no boxes ticked, or the explicit "prefer not to say" box.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.intake.schemas import (
    CITY_MAX_CHARS,
    CONTACT_DETAILS_MAX_CHARS,
    EARLIEST_INCIDENT_YEAR,
    NARRATIVE_MAX_CHARS,
    NUL_CHARACTER,
    TipSubmission,
)
from app.kit.taxonomy import ContactPreference, Perpetrator, ReferralConsent, ReferralForm, Tactic
from app.web.i18n import N_

PREFER_NOT_TO_SAY = "prefer_not_to_say"
MULTI_VALUE_FIELDS = ("tactics", "perpetrators")
BOOLEAN_FIELDS = ("ongoing", "urgent")
SINGLE_VALUE_FIELDS = (
    "narrative",
    "language",
    "host_country",
    "host_city",
    "incident_month",
    "incident_year",
    "ongoing",
    "station_id",
    "urgent",
    "contact_preference",
    "contact_details",
    "referral_consent",
    "referral_form",
)
REPORT_FIELDS = frozenset({*SINGLE_VALUE_FIELDS, *MULTI_VALUE_FIELDS})

TACTIC_CHOICES: tuple[tuple[Tactic, str, str], ...] = (
    (
        Tactic.FAMILY_PRESSURE,
        N_("My family back home was pressured or threatened"),
        N_(
            "For example, police visited or phoned relatives, or they lost a job or a pension because of you."
        ),
    ),
    (
        Tactic.PERSUADE_TO_RETURN,
        N_("Someone pushed me to go back"),
        N_("Calls, messages or visits urging you to return, sometimes with promises or threats."),
    ),
    (
        Tactic.STATION_CONTACT,
        N_('An overseas police "service station" contacted me'),
        N_(
            "An office abroad that says it helps with driving licences or paperwork, but asked about you "
            "or others."
        ),
    ),
    (
        Tactic.SURVEILLANCE,
        N_("I was watched or followed"),
        N_("Someone followed you, photographed you, or asked others about where you live or who you meet."),
    ),
    (
        Tactic.DIGITAL_THREATS,
        N_("I was threatened or harassed online"),
        N_("Threats, hacking attempts or fake accounts in messaging apps, email or social media."),
    ),
    (
        Tactic.DOCUMENT_DENIAL,
        N_("My passport or documents were refused or taken"),
        N_("A consulate refused to renew a passport or issue a paper unless you did something in return."),
    ),
    (
        Tactic.LEGAL_COERCION,
        N_("Someone used the law or the courts against me"),
        N_("For example, an Interpol notice, an extradition request or false reports to the police here."),
    ),
    (
        Tactic.PHYSICAL,
        N_("I was threatened with violence or attacked"),
        N_("Any threat to hurt you or people close to you, or an attack."),
    ),
    (
        Tactic.OTHER,
        N_("Something else"),
        N_("Anything that does not fit above. You can describe it in your own words later."),
    ),
)

PERPETRATOR_CHOICES: tuple[tuple[Perpetrator, str], ...] = (
    (Perpetrator.POLICE, N_("Police from the home country")),
    (Perpetrator.EMBASSY_OR_CONSULATE, N_("An embassy or a consulate")),
    (Perpetrator.SERVICE_STATION, N_('An overseas police "service station"')),
    (Perpetrator.ASSOCIATION, N_("A community, business or student association")),
    (Perpetrator.PERSON_ONLINE, N_("A person online")),
    (Perpetrator.UNKNOWN, N_("I do not know who it was")),
)

CONTACT_CHOICES: tuple[tuple[ContactPreference, str, str], ...] = (
    (
        ContactPreference.RECEIPT_ONLY,
        N_("Only through my receipt (safest)"),
        N_("You come back to this site with your receipt to read our replies. We keep no way to reach you."),
    ),
    (
        ContactPreference.OTHER_CHANNEL,
        N_("Also another way"),
        N_(
            "Tell us how, for example a Signal number. We store it encrypted, but anyone who later reads "
            "your report could also see it."
        ),
    ),
)

CONSENT_CHOICES: tuple[tuple[ReferralConsent | None, str], ...] = (
    (ReferralConsent.NONE, N_("No, keep my report within this organisation")),
    (ReferralConsent.PARTNERS_ONLY, N_("Yes, to trusted partner organisations, but not to the authorities")),
    (
        ReferralConsent.AUTHORITIES_AND_PARTNERS,
        N_("Yes, to the authorities where I live and to partner organisations"),
    ),
    (None, N_("Prefer not to say (we treat this as no)")),
)

FORM_CHOICES: tuple[tuple[ReferralForm, str], ...] = (
    (
        ReferralForm.WITHOUT_IDENTIFYING_DETAILS,
        N_(
            "Without details that could identify me: we remove names, places and anything else that "
            "points to you, and never pass on your files or how to reach you"
        ),
    ),
    (ReferralForm.AS_SENT, N_("As I wrote it, with my files (never how to reach you)")),
)


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    title: str
    fields: tuple[str, ...]


STEPS: tuple[Step, ...] = (
    Step("what", N_("What happened"), ("tactics",)),
    Step(
        "where",
        N_("Where and when"),
        ("host_country", "host_city", "incident_month", "incident_year", "ongoing"),
    ),
    Step("who", N_("Who was behind it"), ("perpetrators", "station_id")),
    Step("story", N_("In your own words"), ("narrative", "urgent")),
    Step(
        "contact",
        N_("Contact and sharing"),
        ("contact_preference", "contact_details", "referral_consent", "referral_form"),
    ),
    Step("review", N_("Check and send"), ()),
)
STEP_KEYS = tuple(step.key for step in STEPS)
_STEP_OF_FIELD = {name: step.key for step in STEPS for name in step.fields}

# What a refused answer says: by field, and by field and kind of error where the kind
# matters. Never pydantic's own wording, which is English only and may quote the input.
_FIELD_MESSAGES: dict[str, str] = {
    "narrative": N_("Please tell us what happened, in a few words at least."),
    "tactics": N_("Choose from the list."),
    "perpetrators": N_("Choose from the list."),
    "host_country": N_("Choose a country from the list."),
    "host_city": N_("The name of the city is too long."),
    "incident_month": N_("Choose a month from the list."),
    "incident_year": N_("Choose a year from the list."),
    "ongoing": N_("Choose from the list."),
    "urgent": N_("Choose from the list."),
    "contact_preference": N_("Choose one of the options."),
    "contact_details": N_("Tell us how to reach you, or choose to be contacted only through your receipt."),
    "referral_consent": N_("Choose one of the options."),
    "referral_form": N_("Choose one of the options."),
    "language": N_("Choose a language from the list."),
    "station_id": N_("Choose a station from the list."),
}
_SPECIFIC_MESSAGES: dict[tuple[str, str], str] = {
    ("narrative", "string_too_long"): N_(
        "What you wrote is longer than 20,000 characters. Please shorten it; "
        "you can send the rest as a message once you have your receipt."
    ),
    ("contact_details", "string_too_long"): N_("This is longer than 500 characters. Please shorten it."),
}
UNKNOWN_FIELD_MESSAGE = N_("The form has a field this site does not know.")
# Whichever text field holds one. Nobody types it: it comes with text pasted from some programs.
NUL_MESSAGE = N_(
    "This text holds an invisible null character, which cannot be stored. "
    "Please type it again instead of pasting it."
)

# Bounds the browser is told about, the same as the model's.
LIMITS = {
    "narrative": NARRATIVE_MAX_CHARS,
    "host_city": CITY_MAX_CHARS,
    "contact_details": CONTACT_DETAILS_MAX_CHARS,
}


@dataclass
class ReportState:
    """What the submitter answered so far, as the raw form values (strings), known fields only."""

    values: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_form(cls, fields: Mapping[str, Sequence[str]]) -> ReportState:
        # Only known names are kept: a crafted field is neither echoed into a page nor stored.
        return cls(
            {
                name: [str(value) for value in values]
                for name, values in fields.items()
                if name in REPORT_FIELDS
            }
        )

    def first(self, name: str) -> str:
        values = self.values.get(name, [])
        return values[0] if values else ""

    def all(self, name: str) -> list[str]:
        return list(self.values.get(name, []))

    def hidden_fields(self, except_fields: Sequence[str] = ()) -> list[tuple[str, str]]:
        """(name, value) pairs to carry in hidden inputs, in a stable order."""
        pairs: list[tuple[str, str]] = []
        for name in sorted(self.values):
            if name in except_fields:
                continue
            pairs.extend((name, value) for value in self.values[name])
        return pairs

    def submission_data(self) -> dict[str, Any]:
        """The state as TipSubmission input: empty answers and "prefer not to say" mean None or []."""
        data: dict[str, Any] = {}
        for name, values in self.values.items():
            if name in MULTI_VALUE_FIELDS:
                data[name] = [value for value in values if value and value != PREFER_NOT_TO_SAY]
            elif len(values) != 1:
                data[name] = values  # repeated: refused by validation
            elif name in BOOLEAN_FIELDS:
                if values[0]:
                    data[name] = values[0]
            elif values[0] != "" or name == "narrative":
                # An empty narrative stays empty, so that it is refused as empty.
                data[name] = values[0]
        return data


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str  # a msgid, translated where it is shown


def validate(state: ReportState) -> tuple[TipSubmission | None, list[FieldError]]:
    """The submission, or the errors of every field that is wrong, in form order."""
    try:
        return TipSubmission.model_validate(state.submission_data()), []
    except ValidationError as exc:
        errors: dict[str, FieldError] = {}
        for error in exc.errors():
            name = str(error["loc"][0]) if error.get("loc") else ""
            if name not in _FIELD_MESSAGES:
                errors.setdefault(name, FieldError(name, UNKNOWN_FIELD_MESSAGE))
                continue
            kind = str(error.get("type"))
            message = (
                NUL_MESSAGE
                if kind == NUL_CHARACTER
                else _SPECIFIC_MESSAGES.get((name, kind), _FIELD_MESSAGES[name])
            )
            errors.setdefault(name, FieldError(name, message))
        order = {name: position for position, name in enumerate(REPORT_FIELDS_IN_ORDER)}
        return None, sorted(errors.values(), key=lambda error: order.get(error.field, -1))


REPORT_FIELDS_IN_ORDER = tuple(name for step in STEPS for name in step.fields)


def step_errors(state: ReportState, step: Step) -> list[FieldError]:
    """The errors of this step's own questions (later steps are not answered yet)."""
    _, errors = validate(state)
    return [error for error in errors if error.field in step.fields]


def first_step_with_errors(errors: Sequence[FieldError]) -> Step:
    """Where to send a submitter whose final post was refused: the first step with a problem."""
    keys = {_STEP_OF_FIELD.get(error.field) for error in errors}
    return next((step for step in STEPS if step.key in keys), STEPS[-1])


def step_named(key: str) -> Step | None:
    return next((step for step in STEPS if step.key == key), None)


def neighbour(step: Step, offset: int) -> Step:
    position = min(max(STEP_KEYS.index(step.key) + offset, 0), len(STEPS) - 1)
    return STEPS[position]


def incident_years(today: dt.date | None = None) -> list[int]:
    current = (today or dt.datetime.now(dt.UTC).date()).year
    return list(range(current, EARLIEST_INCIDENT_YEAR - 1, -1))
