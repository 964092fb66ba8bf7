"""The submitter's pages in every language: no string missing from a catalog, none left in English."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient

from app.kit.taxonomy import Language
from app.web.i18n import BABEL_LOCALES, TRANSLATED_LANGUAGES, catalog_path, translations

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def source_messages() -> set[str]:
    """Every msgid the code and the templates use, extracted as `make messages` does."""
    with (ROOT / "babel.cfg").open() as mapping_file:
        method_map, options_map = parse_mapping_cfg(mapping_file)
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
        ROOT, method_map, options_map, keywords={"_": None, "gettext": None, "N_": None}
    ):
        found.add(message if isinstance(message, str) else message[0])
    return found


SOURCE = source_messages()


def test_extraction_finds_the_pages_strings() -> None:
    assert "Leave this site quickly" in SOURCE
    assert "Step %(number)s of %(total)s: %(title)s" in SOURCE
    assert "My family back home was pressured or threatened" in SOURCE  # marked with N_ in Python
    assert "Too many files are attached to this report." in SOURCE  # an error a page can show
    assert len(SOURCE) > 150


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES, ids=str)
def test_every_string_is_translated_with_its_placeholders(language: Language) -> None:
    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=BABEL_LOCALES[language])
    entries = {message.id: message for message in catalog if message.id}
    missing = sorted(SOURCE - {msgid for msgid, entry in entries.items() if entry.string and not entry.fuzzy})
    assert missing == [], f"untranslated in {language} (run `make messages`, then translate): {missing}"
    stale = sorted(set(entries) - SOURCE)
    assert stale == [], f"no longer used, remove from {language} (`make messages`): {stale}"
    for msgid, entry in entries.items():
        assert isinstance(entry.string, str)
        assert sorted(PLACEHOLDER.findall(entry.string)) == sorted(PLACEHOLDER.findall(msgid)), msgid


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES, ids=str)
def test_the_compiled_catalog_is_the_one_pages_use(language: Language) -> None:
    assert translations(language).gettext("Leave this site quickly") != "Leave this site quickly"


DIRECTIONS = [
    (Language.ENGLISH, "ltr"),
    (Language.SIMPLIFIED_CHINESE, "ltr"),
    (Language.TRADITIONAL_CHINESE, "ltr"),
    (Language.UYGHUR, "rtl"),
    (Language.TIBETAN, "ltr"),
]


@pytest.mark.parametrize(("language", "direction"), DIRECTIONS)
def test_each_page_speaks_its_language(intake_client: TestClient, language: Language, direction: str) -> None:
    for path in ("/", "/followup", "/safety"):
        html = intake_client.get(f"{path}?lang={language}").text
        assert f'<html lang="{language}" dir="{direction}">' in html
        expected = translations(language).gettext("Leave this site quickly")
        assert f">{expected}</a>" in html
        # Every link and form keeps a language: nothing falls back to English by a missing ?lang.
        for url in re.findall(r'(?:href|action)="(/[^"]*)"', html):
            assert url.startswith("/static/") or "?lang=" in url, url


@pytest.mark.parametrize("language", TRANSLATED_LANGUAGES, ids=str)
def test_no_translation_can_carry_markup_or_a_stray_format(language: Language) -> None:
    """Translations are rendered as trusted text (Jinja's newstyle gettext marks them safe) and are
    %-formatted: markup in one would reach the page as HTML, a stray % would break the page."""
    with catalog_path(language).open("rb") as source:
        catalog = read_po(source, locale=BABEL_LOCALES[language])
    for message in catalog:
        if not message.id:
            continue
        for text in (message.id, message.string):
            assert isinstance(text, str)
            assert not re.search(r"[<>&]", text), text
            assert PLACEHOLDER.sub("", text).count("%") == 0, text
