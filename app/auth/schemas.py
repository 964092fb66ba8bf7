from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints


def _printable(value: str) -> str:
    # Control characters (NUL above all, which PostgreSQL refuses in text)
    # never belong in a username.
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError("contains control characters")
    return value


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    username: Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_printable)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    otp: Annotated[str, StringConstraints(min_length=1, max_length=16)]


class SessionInfo(BaseModel):
    username: str
    role: str
    holds_intake_key: bool
