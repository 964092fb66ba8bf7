from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.crypto import sealing
from app.custody.models import IntakeKey
from app.custody.service import create_intake_key
from app.kit.server_secrets import ServerSecrets


@dataclass(frozen=True)
class IntakeKeyFixture:
    key: IntakeKey
    private: sealing.PrivateKey
    recovery_key: str


def make_intake_key(session: Session, server_secrets: ServerSecrets, version: int = 1) -> IntakeKeyFixture:
    key, private, recovery_key = create_intake_key(
        session, key_integrity_key=server_secrets.key_integrity_key, version=version
    )
    return IntakeKeyFixture(key=key, private=private, recovery_key=recovery_key)
