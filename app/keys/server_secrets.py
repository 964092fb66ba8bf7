"""Server-side secrets that must never be in the database (DESIGN 4).

- the receipt pepper: without it a database copy cannot test receipts;
- the TOTP at-rest key: without it a database copy cannot mint one-time codes;
- the key-integrity key: without it a database writer cannot substitute a
  public key that something is sealed to (`app.keys.integrity`);
- the audit signing key (Ed25519) for signed checkpoints.

Each lives in its own 0600 file in the secrets dir, created once by
`daylight init` and never overwritten.
"""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from app.errors import AppError

_NAMES = ("receipt_pepper", "totp_key", "key_integrity_key", "audit_signing_key")


class SecretsUnavailable(AppError):
    status = 503
    code = "not_initialised"
    public_message = "The service is not initialised."


@dataclass(frozen=True, slots=True, repr=False)
class ServerSecrets:
    receipt_pepper: bytes
    totp_key: bytes
    key_integrity_key: bytes
    audit_signing_key: bytes

    def __repr__(self) -> str:
        return "ServerSecrets(<redacted>)"


def create_server_secrets(secrets_dir: Path) -> ServerSecrets:
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    values = {name: os.urandom(32) for name in _NAMES}
    for name, value in values.items():
        # O_EXCL: an existing organisation's secrets are never overwritten.
        fd = os.open(secrets_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(value).decode() + "\n")
    return ServerSecrets(**values)


def load_server_secrets(secrets_dir: Path) -> ServerSecrets:
    values: dict[str, bytes] = {}
    for name in _NAMES:
        path = secrets_dir / name
        try:
            mode = path.stat().st_mode
            raw = path.read_text().strip()
        except FileNotFoundError as exc:
            raise SecretsUnavailable from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{path} must be readable by its owner only (chmod 600)")
        values[name] = base64.b64decode(raw, validate=True)
    return ServerSecrets(**values)
