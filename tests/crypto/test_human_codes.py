"""Crockford base32 codes that people write down and type back (app.crypto.human_codes)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto import human_codes
from app.crypto.human_codes import ALPHABET

PROPERTY = settings(max_examples=100, deadline=None, database=None)
CODE_120 = re.compile(rf"[{ALPHABET}]{{4}}(?:-[{ALPHABET}]{{4}}){{5}}")
SEPARATORS = [" ", "  ", "-", "\t", "\u2010", "\u2011", "\u2013", "\u2014", "\u3000", "\uff0d", "\u00a0"]
# Hand-written: what each canonical digit may be typed as (beyond itself and its case).
TYPED_VARIANTS = {"1": ["1", "I", "i", "L", "l"], "0": ["0", "O", "o"]}


def full_width(char: str) -> str:
    return chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char


@st.composite
def typed_forms(draw: st.DrawFn, digits: str) -> str:
    """``digits`` as a person might type it: any case, confusables, full width, separators."""
    typed = []
    for char in digits:
        char = draw(st.sampled_from(TYPED_VARIANTS.get(char, [char, char.lower()])))
        if draw(st.booleans()):
            char = full_width(char)
        typed.append(char)
        if draw(st.integers(0, 3)) == 0:
            typed.append(draw(st.sampled_from(SEPARATORS)))
    prefix = draw(st.sampled_from(["", " ", "\u3000"]))
    return prefix + "".join(typed)


def test_alphabet_is_crockford() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert set(ALPHABET) == set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert not set("ILOU") & set(ALPHABET)


def test_random_code_120_bits_has_six_groups_of_four() -> None:
    codes = {human_codes.random_code(120) for _ in range(50)}
    assert len(codes) == 50
    for code in codes:
        assert len(code) == 29
        assert CODE_120.fullmatch(code), code
        groups = code.split("-")
        assert [len(g) for g in groups] == [4] * 6
        assert human_codes.normalize(code, length=24) == code.replace("-", "")


@pytest.mark.parametrize(("bits", "chars"), [(1, 1), (5, 1), (6, 2), (80, 16), (128, 26)])
def test_random_code_carries_at_least_the_requested_bits(bits: int, chars: int) -> None:
    code = human_codes.random_code(bits)
    digits = code.replace("-", "")
    assert len(digits) == chars
    assert len(digits) * 5 >= bits
    assert code == human_codes.group(digits)


def test_random_code_uses_the_whole_alphabet() -> None:
    seen = set("".join(human_codes.random_code(120) for _ in range(200)).replace("-", ""))
    assert seen == set(ALPHABET)


@PROPERTY
@given(digits=st.text(alphabet=ALPHABET, min_size=24, max_size=24), data=st.data())
def test_normalize_round_trips_any_formatting(digits: str, data: st.DataObject) -> None:
    assert human_codes.normalize(human_codes.group(digits), length=24) == digits
    typed = data.draw(typed_forms(digits), label="typed")
    assert human_codes.normalize(typed, length=24) == digits


@PROPERTY
@given(
    digits=st.text(alphabet=ALPHABET, min_size=1, max_size=40), length=st.integers(min_value=0, max_value=40)
)
def test_normalize_rejects_the_wrong_length(digits: str, length: int) -> None:
    expected = digits if len(digits) == length else None
    assert human_codes.normalize(human_codes.group(digits), length=length) == expected


@PROPERTY
@given(
    digits=st.text(alphabet=ALPHABET, min_size=24, max_size=24),
    position=st.integers(min_value=0, max_value=23),
    bad=st.sampled_from(["U", "u", "Ｕ", "*", "_", "/", ".", "Ä", "ß"]),
)
def test_normalize_rejects_characters_outside_the_alphabet(digits: str, position: int, bad: str) -> None:
    typed = digits[:position] + bad + digits[position + 1 :]
    assert human_codes.normalize(typed, length=24) is None


@PROPERTY
@given(text=st.text(max_size=40), length=st.integers(min_value=0, max_value=30))
def test_normalize_output_is_canonical_or_none(text: str, length: int) -> None:
    result = human_codes.normalize(text, length=length)
    if result is not None:
        assert len(result) == length
        assert set(result) <= set(ALPHABET)
        assert human_codes.normalize(result, length=length) == result


def test_script_digits_and_dash_lookalikes_are_accepted() -> None:
    """An Uyghur/Arabic keyboard types ٠-٩ or ۰-۹; CJK keyboards type ー or − as a dash."""
    assert human_codes.normalize("١٢٣٤−ABCD", length=8) == "1234ABCD"
    assert human_codes.normalize("۱۲۳۴ー۵۶۷۸", length=8) == "12345678"
    assert human_codes.normalize("ABCD・EFGH", length=8) == "ABCDEFGH"
    assert human_codes.normalize("ABCD\u2212EFG", length=8) is None
