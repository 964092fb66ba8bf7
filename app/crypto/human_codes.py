"""Secrets a person writes down: Crockford base32 in groups of four.

Crockford's alphabet has no I, L, O or U, so a code read aloud or copied by
hand survives the usual confusions; input is normalised generously
(full-width characters, case, spaces, dashes, I/L for 1, O for 0), so a
frightened submitter on a phone keyboard in any language can type it back.
"""

from __future__ import annotations

import secrets
import unicodedata

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_VALUES = {char: index for index, char in enumerate(ALPHABET)}
_CONFUSABLES = str.maketrans({"I": "1", "L": "1", "O": "0"})
GROUP = 4
# Dash look-alikes outside Unicode's "Pd" category: minus sign, katakana
# prolonged sound mark (typed as a dash on Japanese and Chinese keyboards), middle dots.
_SEPARATORS = frozenset("\u2212\u30fc\uff70\u00b7\u30fb")


def random_code(bits: int) -> str:
    """A code carrying at least ``bits`` of entropy from the OS CSPRNG, grouped for reading."""
    chars = -(-bits // 5)  # each character carries 5 bits
    # One read of the CSPRNG, cut into 5-bit digits: the alphabet has exactly 32 characters,
    # so every digit is uniform (no modulo bias), at a 50th of the cost of a read per digit.
    value = secrets.randbits(5 * chars)
    return group("".join(ALPHABET[(value >> (5 * index)) & 31] for index in range(chars)))


def group(digits: str) -> str:
    return "-".join(digits[i : i + GROUP] for i in range(0, len(digits), GROUP))


def _fold(ch: str) -> str:
    # Arabic-Indic, Persian and other script digits, as an Uyghur or Arabic
    # keyboard may type them, become ASCII digits.
    return str(unicodedata.decimal(ch)) if ch.isdecimal() else ch


def _is_separator(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Pd" or ch in _SEPARATORS


def normalize(code: str, *, length: int) -> str | None:
    """The canonical digits of a typed code, or None when it cannot be one."""
    if len(code) > 8 * length:  # generous for separators; bounds the work on absurd input
        return None
    folded = unicodedata.normalize("NFKC", code).upper().translate(_CONFUSABLES)
    digits = "".join(_fold(ch) for ch in folded if not _is_separator(ch))
    if len(digits) != length or any(ch not in _VALUES for ch in digits):
        return None
    return digits
