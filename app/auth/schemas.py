from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.auth.models import Role

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]$")


def _printable(value: str) -> str:
    # Control characters (NUL above all, which PostgreSQL refuses in text)
    # never belong in a username.
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError("contains control characters")
    return value


def check_new_username(value: str) -> str:
    """A new account's username, as the staff app and the API accept it (also `daylight accounts
    invite`); ValueError, with the message the form shows, for anything else."""
    if not USERNAME_PATTERN.fullmatch(value):
        raise ValueError("3 to 64 characters: lowercase letters, digits, '.', '_' or '-'")
    return value


Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
OneTimeCode = Annotated[str, StringConstraints(min_length=1, max_length=16)]


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoginRequest(StrictBody):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_printable)]
    password: Password
    otp: OneTimeCode


class SessionInfo(BaseModel):
    username: str
    role: str
    holds_intake_key: bool


class StepUpRequest(StrictBody):
    password: Password


class ChangePasswordRequest(StrictBody):
    current_password: Password
    new_password: Password


class SessionView(BaseModel):
    id: uuid.UUID
    created_at: dt.datetime
    last_seen_at: dt.datetime
    current: bool


class CreateAccountRequest(StrictBody):
    # The pattern is checked by check_new_username (for its plain-words message); declared for clients.
    username: Annotated[
        str,
        AfterValidator(check_new_username),
        Field(json_schema_extra={"pattern": USERNAME_PATTERN.pattern}),
    ]
    role: Role


class UpdateAccountRequest(StrictBody):
    role: Role | None = None
    is_active: bool | None = None


class AccountView(BaseModel):
    id: uuid.UUID
    username: str
    role: Role
    is_active: bool
    activated: bool
    locked: bool
    holds_intake_key: bool
    created_on: dt.date
    # Whether a lead confirmed the key pair made at the member's last activation or password
    # reset (app.auth.confirmation); False: awaiting a lead's confirmation, no key grant.
    confirmed: bool = False


class LinkIssued(BaseModel):
    """A one-time link, shown once: the admin hands it to the member out of band."""

    account_id: uuid.UUID
    purpose: str
    link_path: str
    expires_in_hours: int


class LinkView(BaseModel):
    purpose: str
    username: str
    totp_secret: str | None
    totp_uri: str | None


class CompleteLinkRequest(StrictBody):
    otp: OneTimeCode
    new_password: Password | None = None
    current_password: Password | None = None
