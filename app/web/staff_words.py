"""The staff UI's words for the report's closed vocabularies: never a code or an id on a page.

Staff pages are in English (DESIGN 7); a tactic, language, country or perpetrator is shown by
its name, and a code this version does not know is shown as it is rather than hidden.
"""

from __future__ import annotations

from babel import Locale

from app.kit.taxonomy import Language, Perpetrator, Tactic

TACTIC_WORDS = {
    Tactic.FAMILY_PRESSURE: "family pressured",
    Tactic.PERSUADE_TO_RETURN: "pressure to return",
    Tactic.STATION_CONTACT: "contact by a service station",
    Tactic.SURVEILLANCE: "watched or followed",
    Tactic.DIGITAL_THREATS: "online threats",
    Tactic.DOCUMENT_DENIAL: "documents refused",
    Tactic.LEGAL_COERCION: "legal coercion",
    Tactic.PHYSICAL: "violence or its threat",
    Tactic.OTHER: "other",
}
LANGUAGE_WORDS = {
    Language.ENGLISH: "English",
    Language.SIMPLIFIED_CHINESE: "Chinese (Simplified)",
    Language.TRADITIONAL_CHINESE: "Chinese (Traditional)",
    Language.UYGHUR: "Uyghur",
    Language.TIBETAN: "Tibetan",
}
PERPETRATOR_WORDS = {
    Perpetrator.POLICE: "home-country police",
    Perpetrator.EMBASSY_OR_CONSULATE: "embassy or consulate",
    Perpetrator.SERVICE_STATION: "service station",
    Perpetrator.ASSOCIATION: "association",
    Perpetrator.PERSON_ONLINE: "person online",
    Perpetrator.UNKNOWN: "unknown",
}
_TERRITORIES = Locale("en").territories


def _words(vocabulary: dict[str, str], code: object) -> str:
    text = str(code)
    return vocabulary.get(text, text.replace("_", " "))


def tactic_words(code: object) -> str:
    return _words(TACTIC_WORDS, code)  # type: ignore[arg-type]


def language_words(code: object) -> str:
    return _words(LANGUAGE_WORDS, code)  # type: ignore[arg-type]


def perpetrator_words(code: object) -> str:
    return _words(PERPETRATOR_WORDS, code)  # type: ignore[arg-type]


def country_words(code: object) -> str:
    text = str(code or "")
    return str(_TERRITORIES.get(text.upper(), text)) if text else ""


STAFF_FILTERS = {
    "tactic_words": tactic_words,
    "language_words": language_words,
    "perpetrator_words": perpetrator_words,
    "country_words": country_words,
}
