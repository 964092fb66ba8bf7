"""Who is behind a staff request: the principal, and the keys its login unlocked.

The unlocked keys travel only inside the session row, sealed under a key derived from the
session token that only the cookie carries (app.auth.sessions)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from app.audit_log import events as audit
from app.auth.models import Role, StaffAccount
from app.auth.permissions import Permission, role_has
from app.crypto import sealing


@dataclass(frozen=True, slots=True, repr=False)
class UnlockedKeys:
    """The private keys a login unlocked: the personal key and granted intake key versions."""

    personal: sealing.PrivateKey
    intake: Mapping[int, sealing.PrivateKey] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"UnlockedKeys(intake_versions={sorted(self.intake)})"

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "personal": base64.b64encode(self.personal.raw).decode(),
                "intake": {str(v): base64.b64encode(k.raw).decode() for v, k in self.intake.items()},
            }
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> UnlockedKeys:
        data = json.loads(raw)
        return cls(
            personal=sealing.PrivateKey(base64.b64decode(data["personal"])),
            intake={int(v): sealing.PrivateKey(base64.b64decode(k)) for v, k in data["intake"].items()},
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated staff member behind a request."""

    account_id: uuid.UUID
    username: str
    role: Role
    session_id: uuid.UUID
    keys: UnlockedKeys
    reauthenticated_at: dt.datetime
    # Per-session token for the staff UI's forms, derived from the cookie.
    csrf_token: str

    def can(self, permission: Permission) -> bool:
        return role_has(self.role, permission)

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(id=self.account_id, username=self.username, role=self.role.value)

    def intake_private_key(self, version: int) -> sealing.PrivateKey | None:
        return self.keys.intake.get(version)


def account_actor(account: StaffAccount) -> audit.Actor:
    return audit.Actor(id=account.id, username=account.username, role=Role(account.role).value)
