from __future__ import annotations

import pytest

from app.auth.passwords import (
    MAX_PASSWORD_CHARACTERS,
    PasswordRejected,
    PasswordRejection,
    check_new_password,
    common_passwords,
)

USERNAME = "amina.k"


def rejection(password: str, username: str = USERNAME) -> PasswordRejection:
    with pytest.raises(PasswordRejected) as raised:
        check_new_password(password, username=username)
    assert raised.value.status == 422
    assert raised.value.code == "weak_password"
    return raised.value.reason


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "Tarim-walnut-ferry-47",
        "qz7!Vm2#rT9p",  # exactly 12
        "كلمة سر طويلة جدا",  # non-Latin passphrase
        "x" * 11 + "y",  # two distinct characters is not "repeated"
        "a" * (MAX_PASSWORD_CHARACTERS - 1) + "b",
        "iloveyou-in-the-morning",  # a common word inside a longer phrase
    ],
)
def test_strong_passwords_are_accepted(password: str) -> None:
    check_new_password(password, username=USERNAME)


@pytest.mark.parametrize("password", ["", "short", "elevenchars", "ab1!ab1!ab1"])
def test_fewer_than_twelve_characters_is_refused(password: str) -> None:
    assert rejection(password) is PasswordRejection.TOO_SHORT


def test_length_counts_characters_after_nfc_normalisation() -> None:
    # "é" typed as e + U+0301 is two code points but one character: eleven in all.
    decomposed = "cafe\u0301cafe\u0301xyz"
    assert len(decomposed) == 13
    assert rejection(decomposed) is PasswordRejection.TOO_SHORT
    check_new_password("cafe\u0301 walnut ferry", username=USERNAME)


def test_more_than_1024_characters_is_refused() -> None:
    assert rejection("ab" * 513) is PasswordRejection.TOO_LONG


@pytest.mark.parametrize("password", ["a" * 12, "!" * 40, "ß" * 20])
def test_one_repeated_character_is_refused(password: str) -> None:
    assert rejection(password) is PasswordRejection.REPEATED_CHARACTER


@pytest.mark.parametrize("password", ["Amina.K-walnut-ferry", "my name is AMINA.K!!", "xxamina.kxxx"])
def test_a_password_containing_the_username_is_refused(password: str) -> None:
    assert rejection(password) is PasswordRejection.CONTAINS_USERNAME


def test_usernames_shorter_than_three_characters_are_not_matched() -> None:
    check_new_password("ab-walnut-ferry-ab", username="ab")
    assert rejection("abc-walnut-ferry", username="ABC") is PasswordRejection.CONTAINS_USERNAME


@pytest.mark.parametrize("password", ["1qaz2wsx3edc", "MortalKombat", "1234567890QWERTY"])
def test_a_listed_password_is_refused_whatever_its_case(password: str) -> None:
    assert password.lower() in common_passwords()
    assert rejection(password) is PasswordRejection.COMMON


@pytest.mark.parametrize("password", ["iloveyou2024!!", "Password12345", "sunshine!!!!", "Dragon_1987."])
def test_a_listed_password_with_digits_or_punctuation_appended_is_refused(password: str) -> None:
    assert password.lower() not in common_passwords()
    assert rejection(password) is PasswordRejection.COMMON_WITH_DECORATION


@pytest.mark.parametrize("password", ["123456789012", "abc123456789!", "!!!...???###"])
def test_a_stem_shorter_than_four_characters_is_refused(password: str) -> None:
    assert rejection(password) is PasswordRejection.COMMON_WITH_DECORATION


def test_each_rejection_has_its_own_public_message() -> None:
    examples = {
        PasswordRejection.TOO_SHORT: "short",
        PasswordRejection.TOO_LONG: "ab" * 600,
        PasswordRejection.REPEATED_CHARACTER: "z" * 12,
        PasswordRejection.CONTAINS_USERNAME: "amina.k walnut ferry",
        PasswordRejection.COMMON: "finalfantasy",
        PasswordRejection.COMMON_WITH_DECORATION: "iloveyou2024!!",
    }
    messages = set()
    for reason, password in examples.items():
        with pytest.raises(PasswordRejected) as raised:
            check_new_password(password, username=USERNAME)
        assert raised.value.reason is reason
        assert password not in raised.value.public_message  # never echo the secret
        messages.add(raised.value.public_message)
    assert len(messages) == len(PasswordRejection)


def test_the_bundled_list_is_large_lowercase_and_loaded_once() -> None:
    listed = common_passwords()
    assert len(listed) > 10_000
    assert {"password", "iloveyou", "dragon"} <= listed
    assert all(entry == entry.lower() and entry.strip() == entry and entry for entry in listed)
    assert common_passwords() is listed
