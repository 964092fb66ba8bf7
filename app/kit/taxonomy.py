"""The closed vocabularies of a report: tactic codes (DESIGN 8), languages, ISO 3166 countries."""

from __future__ import annotations

from enum import StrEnum

from babel import Locale


class Tactic(StrEnum):
    FAMILY_PRESSURE = "family_pressure"
    PERSUADE_TO_RETURN = "persuade_to_return"
    STATION_CONTACT = "station_contact"
    SURVEILLANCE = "surveillance"
    DIGITAL_THREATS = "digital_threats"
    DOCUMENT_DENIAL = "document_denial"
    LEGAL_COERCION = "legal_coercion"
    PHYSICAL = "physical"
    OTHER = "other"


class Perpetrator(StrEnum):
    """Who the pressure came from, as the submitter saw it."""

    POLICE = "police"
    EMBASSY_OR_CONSULATE = "embassy_or_consulate"
    SERVICE_STATION = "service_station"
    ASSOCIATION = "association"
    PERSON_ONLINE = "person_online"
    UNKNOWN = "unknown"


class ContactPreference(StrEnum):
    # The default: nothing about the submitter is stored to reach them by.
    RECEIPT_ONLY = "receipt_only"
    OTHER_CHANNEL = "other_channel"


class ReferralConsent(StrEnum):
    AUTHORITIES_AND_PARTNERS = "authorities_and_partners"
    PARTNERS_ONLY = "partners_only"
    NONE = "none"


class ReferralForm(StrEnum):
    """In which form a report may be passed on, when it may be at all (app.referrals)."""

    AS_SENT = "as_sent"
    # Contact details and files never leave; the text only once a member has redacted what
    # identifies the submitter and a lead has approved it. Also what an unanswered question means.
    WITHOUT_IDENTIFYING_DETAILS = "without_identifying_details"


class Language(StrEnum):
    ENGLISH = "en"
    SIMPLIFIED_CHINESE = "zh-Hans"
    TRADITIONAL_CHINESE = "zh-Hant"
    UYGHUR = "ug"
    TIBETAN = "bo"


# CLDR (through Babel) lists every ISO 3166-1 alpha-2 code plus some that are
# not countries in ISO 3166-1: exceptional reservations, groupings and
# private-use codes. Those are removed, leaving the 249 assigned codes.
_NOT_ISO_3166_1 = frozenset(
    {"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "XK", "ZZ"}
)
COUNTRY_CODES: frozenset[str] = frozenset(
    code
    for code in map(str, Locale("en").territories)
    if len(code) == 2 and code.isalpha() and code.isupper() and code not in _NOT_ISO_3166_1
)
