"""Keyed search index of a tip's text: words as truncated HMACs, looked up by key holders only.

Words are cut from the narrative, the messages both ways and the staff notes (`words_of`):
runs of letters and digits in any script, casefolded and NFKC-normalised, Latin letters without
their accents; Chinese, which has no spaces, as every single character and every pair of
neighbouring characters, so a two-character word such as 劝返 is one term and a longer one is
the pairs it is made of. Invisible format characters (zero-width joiners, bidirectional marks)
are dropped first: they must neither split a word nor hide one.

Each word is stored as HMAC-SHA256 under a key derived from the intake private key of the tip's
key version, truncated to 16 bytes: only someone holding the intake key can compute the term of
a word to look for it, as with the filter tags (app.triage.tags). Presence only, one row per
distinct word: no count, no position. What a database copy does show — which tips share a word,
how many distinct words a tip has, how common each (unknown) word is — is stated in SECURITY.md.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import unicodedata
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.auth.principal import Principal
from app.crypto import sealing
from app.crypto.binding import bind

TERM_BYTES = 16
MAX_WORD_CHARACTERS = 40
MAX_QUERY_WORDS = 12
# The search reads at most this many ranked matches: a member refines a query that finds more.
MAX_RESULTS = 200

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_HAN_RUN = re.compile(f"[{_HAN}]+")
# Tibetan vowel signs and subjoined letters are combining marks, which \w leaves out: without
# them a syllable falls apart into single letters. The tsheg (U+0F0B) and the shad are
# punctuation, so a Tibetan word is a syllable.
_TIBETAN_MARKS = r"\u0f18\u0f19\u0f35\u0f37\u0f39\u0f3e\u0f3f\u0f71-\u0f84\u0f86\u0f87\u0f8d-\u0fbc\u0fc6"
_WORD = re.compile(rf"(?:[^\W_{_HAN}]|[{_TIBETAN_MARKS}])+")


def search_key(intake_private: sealing.PrivateKey, version: int) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=bind("daylight/tip-search-index/v1", version)
    ).derive(intake_private.raw)


def term(key: bytes, word: str) -> bytes:
    return hmac.new(key, word.encode(), hashlib.sha256).digest()[:TERM_BYTES]


def _without_latin_accents(word: str) -> str:
    """é → e, ü → u; other scripts as they are (an Arabic-script hamza is a letter, not an accent)."""
    if not any("a" <= character <= "z" or "\u00c0" <= character <= "\u024f" for character in word):
        return word
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(character for character in decomposed if not unicodedata.combining(character))


def normalized(text: str) -> str:
    visible = "".join(character for character in text if unicodedata.category(character) != "Cf")
    return unicodedata.normalize("NFKC", visible).casefold()


def _han_words(run: str, *, single_characters: bool) -> list[str]:
    pairs = [run[index : index + 2] for index in range(len(run) - 1)]
    if len(run) == 1 or single_characters:
        return [*run, *pairs]
    return pairs


def words_of(text: str, *, for_query: bool = False) -> list[str]:
    """The distinct words of a text in first-seen order. A query's Chinese is looked up as
    character pairs only (one character alone when it is all there is), so 劝返 asks for the
    pair and not for every text that has 劝 somewhere."""
    found: dict[str, None] = {}
    text = normalized(text)
    for run in _HAN_RUN.findall(text):
        for word in _han_words(run, single_characters=not for_query):
            found.setdefault(word, None)
    for match in _WORD.findall(_HAN_RUN.sub(" ", text)):
        word = _without_latin_accents(match)
        if len(word) >= 2 or not word.isascii():
            found.setdefault(word[:MAX_WORD_CHARACTERS], None)
    return list(found)


def terms_of(key: bytes, texts: Iterable[str]) -> set[bytes]:
    return {term(key, word) for text in texts for word in words_of(text)}


def query_words(query: str) -> list[str]:
    return words_of(query, for_query=True)[:MAX_QUERY_WORDS]


def query_terms(principal: Principal, words: list[str]) -> list[list[bytes]]:
    """Per query word, its terms under every intake key version the caller holds (a tip's
    terms are all under one version, so it matches at most one of them per word)."""
    keys = [search_key(private, version) for version, private in principal.keys.intake.items()]
    return [[term(key, word) for key in keys] for word in words]


def minimum_matches(words: int) -> int:
    """A tip must hold at least half the query's words (all of one or two) to be a match;
    more matched words rank higher."""
    return words if words <= 2 else math.ceil(words / 2)
