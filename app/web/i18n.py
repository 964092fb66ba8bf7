"""Translations of the submitter's pages: gettext catalogs (Babel), one per language.

The catalogs are the `.po` files under ``app/locale/<locale>/LC_MESSAGES/`` and
are compiled in memory when the process starts, so the repository holds no
generated binaries and a catalog edit needs no build step. English is the
source language: its "catalog" is the msgids themselves.

Strings defined in Python (tactic labels, error messages) are marked with
``N_`` so that extraction finds them, and translated where they are shown
(``_(label)`` in a template, or ``Translator.gettext``).
"""

from __future__ import annotations

import functools
import gettext
from io import BytesIO
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from app.kit.errors import N_
from app.kit.taxonomy import Language

__all__ = ["N_", "babel_locale", "catalog_path", "translations"]

LOCALE_DIR = Path(__file__).resolve().parents[1] / "locale"
DOMAIN = "messages"
SOURCE_LANGUAGE = Language.ENGLISH

# Our language codes are BCP 47 (what `lang` and `hreflang` take); Babel and
# the catalog directories use CLDR identifiers.
BABEL_LOCALES: dict[Language, str] = {
    Language.ENGLISH: "en",
    Language.SIMPLIFIED_CHINESE: "zh_Hans",
    Language.TRADITIONAL_CHINESE: "zh_Hant",
    Language.UYGHUR: "ug",
    Language.TIBETAN: "bo",
}
TRANSLATED_LANGUAGES = tuple(language for language in Language if language is not SOURCE_LANGUAGE)


def catalog_path(language: Language) -> Path:
    return LOCALE_DIR / BABEL_LOCALES[language] / "LC_MESSAGES" / f"{DOMAIN}.po"


def babel_locale(language: Language) -> Locale:
    return Locale.parse(BABEL_LOCALES[language])


@functools.cache
def translations(language: Language) -> gettext.NullTranslations:
    """The language's compiled catalog (fuzzy entries left out: they are unreviewed guesses)."""
    if language is SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=BABEL_LOCALES[language], domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)
