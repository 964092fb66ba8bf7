"""The policy a new staff password must meet before it is hashed and stored.

A staff password is the root of that member's personal key: it unwraps the
intake key grants, so whoever guesses it reads every tip the member can read.
The threat is an offline guess against a stolen database (Argon2id slows each
guess, it does not stop a dictionary) and an online guess at the login form
(TOTP stops that one alone). The rules below refuse the passwords that
dictionary attacks try first; they do not demand character classes, which
push people to "Password1!" and add nothing against such a dictionary
(NIST SP 800-63B, 5.1.1.2).
"""

from __future__ import annotations

import string
import unicodedata
from enum import StrEnum
from functools import cache
from importlib.resources import files

from app.kit.errors import AppError

MIN_PASSWORD_CHARACTERS = 12
# Argon2id takes any length, but the login body is parsed and normalised on
# every attempt: a bound keeps a megabyte "password" from costing more than a
# guess should. 1024 leaves room for any passphrase a person would type.
MAX_PASSWORD_CHARACTERS = 1024
# Below this, what is left once the decoration is stripped ("abc" of
# "abc123456789!") is a guess in the first few thousand of any dictionary.
MIN_STEM_CHARACTERS = 4
MIN_USERNAME_CHARACTERS_TO_MATCH = 3

# "iloveyou2024!!": a common word plus the year and a symbol is the first
# mutation every cracking rule set tries, so the stem is checked as well.
_DECORATION_SUFFIX = string.digits + string.punctuation + string.whitespace

_COMMON_PASSWORDS_RESOURCE = ("data", "common-passwords.txt")


class PasswordRejection(StrEnum):
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    REPEATED_CHARACTER = "repeated_character"
    CONTAINS_USERNAME = "contains_username"
    COMMON = "common"
    COMMON_WITH_DECORATION = "common_with_decoration"


_PUBLIC_MESSAGES: dict[PasswordRejection, str] = {
    PasswordRejection.TOO_SHORT: f"Choose a password of at least {MIN_PASSWORD_CHARACTERS} characters. "
    "A few unrelated words make a long password that is easy to remember.",
    PasswordRejection.TOO_LONG: f"Choose a password of at most {MAX_PASSWORD_CHARACTERS} characters.",
    PasswordRejection.REPEATED_CHARACTER: (
        "A password made of one repeated character is guessed at once. Choose another."
    ),
    PasswordRejection.CONTAINS_USERNAME: "The password must not contain your username. Choose another.",
    PasswordRejection.COMMON: (
        "This password is on a list of commonly used passwords that attackers try first. Choose another."
    ),
    PasswordRejection.COMMON_WITH_DECORATION: (
        "This password is a common password or a very short word with numbers or symbols added "
        "at the end, which attackers try first. Choose another."
    ),
}


class PasswordRejected(AppError):
    status = 422
    code = "weak_password"
    public_message = "This password is too easy to guess. Choose another."

    def __init__(self, reason: PasswordRejection) -> None:
        super().__init__(_PUBLIC_MESSAGES[reason])
        self.reason = reason


@cache
def common_passwords() -> frozenset[str]:
    """The lowercase entries of the bundled list (zxcvbn's "passwords" frequency list)."""
    resource = files("app.auth").joinpath(*_COMMON_PASSWORDS_RESOURCE)
    return frozenset(line for line in resource.read_text(encoding="utf-8").splitlines() if line)


def check_new_password(password: str, *, username: str) -> None:
    """Raise `PasswordRejected` unless `password` may be set for `username`.

    Lengths count code points of the NFC form, close to what a person sees
    as characters: "é" typed as e + combining accent counts once.
    """
    normalised = unicodedata.normalize("NFC", password)
    if len(normalised) < MIN_PASSWORD_CHARACTERS:
        raise PasswordRejected(PasswordRejection.TOO_SHORT)
    if len(normalised) > MAX_PASSWORD_CHARACTERS:
        raise PasswordRejected(PasswordRejection.TOO_LONG)
    if len(set(normalised)) == 1:
        raise PasswordRejected(PasswordRejection.REPEATED_CHARACTER)

    lowered = normalised.lower()
    # A targeted guess starts from what the attacker already knows, and the
    # username is on every login form and in every leaked table.
    username_lowered = unicodedata.normalize("NFC", username).strip().lower()
    if len(username_lowered) >= MIN_USERNAME_CHARACTERS_TO_MATCH and username_lowered in lowered:
        raise PasswordRejected(PasswordRejection.CONTAINS_USERNAME)

    known = common_passwords()
    if lowered in known:
        raise PasswordRejected(PasswordRejection.COMMON)
    stem = lowered.rstrip(_DECORATION_SUFFIX)
    if len(stem) < MIN_STEM_CHARACTERS or stem in known:
        raise PasswordRejected(PasswordRejection.COMMON_WITH_DECORATION)
