"""What a password unlocks: Argon2id derives a verifier and a key-encryption key (split by
HKDF); the verifier proves the password, the key-encryption key unwraps the personal private
key. The server stores neither the password nor anything that opens the key without it."""

from __future__ import annotations

import hmac

from app.auth.models import PERSONAL_PRIVATE_KEY, StaffAccount
from app.crypto import kdf, sealing
from app.crypto.integrity import public_key_mac
from app.custody.service import staff_key_context
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets


def argon2_parameters(settings: Settings) -> kdf.Argon2Parameters:
    return kdf.Argon2Parameters(
        time_cost=settings.argon2.time_cost,
        memory_cost_kib=settings.argon2.memory_cost_kib,
        parallelism=settings.argon2.parallelism,
    )


def set_password_and_new_key_pair(
    account: StaffAccount, password: str, *, settings: Settings, server_secrets: ServerSecrets
) -> sealing.PrivateKey:
    """Give the account a password and a fresh personal key pair, wrapped under the password.

    A new key pair, not a re-wrap: this is for activation and for an admin
    reset of a forgotten password, where the old private key is out of reach.
    Grants sealed to an old key pair no longer open; the caller deletes them.
    """
    personal_private = sealing.generate_private_key()
    personal_public = personal_private.public_key()
    account.public_key = personal_public.raw
    account.public_key_mac = public_key_mac(
        server_secrets.key_integrity_key, personal_public, *staff_key_context(account.id)
    )
    wrap_under_password(account, password, personal_private, settings)
    return personal_private


def wrap_under_password(
    account: StaffAccount, password: str, personal_private: sealing.PrivateKey, settings: Settings
) -> None:
    salt = kdf.new_salt()
    params = argon2_parameters(settings)
    login_keys = kdf.derive_login_keys(password, salt, params)
    account.password_salt = salt
    account.argon2_time_cost = params.time_cost
    account.argon2_memory_cost_kib = params.memory_cost_kib
    account.argon2_parallelism = params.parallelism
    account.login_verifier = login_keys.verifier
    account.wrapped_private_key = PERSONAL_PRIVATE_KEY.seal(
        login_keys.key_encryption_key, personal_private.raw, row_id=str(account.id)
    )


def derive_account_login_keys(account: StaffAccount, password: str) -> kdf.LoginKeys:
    if (
        account.password_salt is None
        or account.argon2_time_cost is None
        or account.argon2_memory_cost_kib is None
        or account.argon2_parallelism is None
    ):
        raise ValueError("the account has no password yet")
    params = kdf.Argon2Parameters(
        account.argon2_time_cost, account.argon2_memory_cost_kib, account.argon2_parallelism
    )
    return kdf.derive_login_keys(password, account.password_salt, params)


def password_matches(account: StaffAccount, password: str) -> kdf.LoginKeys | None:
    """The login keys when ``password`` is the account's, else None (always one Argon2id run)."""
    login_keys = derive_account_login_keys(account, password)
    if account.login_verifier is None or not hmac.compare_digest(login_keys.verifier, account.login_verifier):
        return None
    return login_keys


def unwrap_personal_key(account: StaffAccount, login_keys: kdf.LoginKeys) -> sealing.PrivateKey:
    if account.wrapped_private_key is None:
        raise ValueError("the account has no key pair yet")
    return sealing.PrivateKey(
        PERSONAL_PRIVATE_KEY.open(
            login_keys.key_encryption_key, account.wrapped_private_key, row_id=str(account.id)
        )
    )
