"""Server-side secrets that must never be in the database (DESIGN 4).

- the receipt pepper: without it a database copy cannot test receipts;
- the TOTP at-rest key: without it a database copy cannot mint one-time codes;
- the key-integrity key: without it a database writer cannot substitute a
  public key that something is sealed to (`app.crypto.integrity`);
- the audit signing key (Ed25519) for signed checkpoints.

Each is base64 of 32 random bytes, created once by `daylight init` in its own
0600 file in the secrets dir and never overwritten. An operator may instead
supply one from the environment, first match wins:

1. `DAYLIGHT_SECRET_<NAME>`: the base64 value itself;
2. `DAYLIGHT_SECRET_<NAME>_FILE`: an absolute path to a file holding it
   (Docker secrets; systemd credentials via `%d/<name>` in the unit);
3. `<secrets dir>/<name>`.

Setting both 1 and 2 for one secret is refused: which one wins would be a
guess. systemd's `$CREDENTIALS_DIRECTORY` is not searched on its own, so that
no secret is ever taken from a place the configuration does not name.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import stat
from pathlib import Path

from app.kit.errors import AppError

SECRET_NAMES = ("receipt_pepper", "totp_key", "key_integrity_key", "audit_signing_key")
SECRET_BYTES = 32
ENV_PREFIX = "DAYLIGHT_SECRET_"


class SecretsUnavailable(AppError):
    status = 503
    code = "not_initialised"
    public_message = "The service is not initialised."


class InvalidServerSecret(ValueError):
    """A secret's source is set but unusable. The message names the source and never holds the value."""


class SecretNotHeld(RuntimeError):
    """This process was started without that secret (the intake app holds no staff secret)."""


class ServerSecrets:
    """The server secrets one process holds. A process of one app loads only what that app
    uses (INTAKE_SECRETS, STAFF_SECRETS): a compromised public intake process cannot mint
    staff one-time codes or sign audit checkpoints. Asking for a secret not held raises."""

    __slots__ = ("_values",)
    _values: dict[str, bytes]

    def __init__(self, **values: bytes) -> None:
        unknown = set(values) - set(SECRET_NAMES)
        if unknown:
            raise TypeError(f"unknown server secrets: {sorted(unknown)}")
        object.__setattr__(self, "_values", dict(values))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ServerSecrets is immutable")

    def _get(self, name: str) -> bytes:
        try:
            return self._values[name]
        except KeyError:
            raise SecretNotHeld(f"this process does not hold the {name}") from None

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._values)

    @property
    def receipt_pepper(self) -> bytes:
        return self._get("receipt_pepper")

    @property
    def totp_key(self) -> bytes:
        return self._get("totp_key")

    @property
    def key_integrity_key(self) -> bytes:
        return self._get("key_integrity_key")

    @property
    def audit_signing_key(self) -> bytes:
        return self._get("audit_signing_key")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSecrets):
            return NotImplemented
        return hmac.compare_digest(
            repr(sorted(self._values.items())).encode(), repr(sorted(other._values.items())).encode()
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "ServerSecrets(<redacted>)"


# What each app's processes load (`daylight serve`): the intake app tests receipts and checks
# the MACs of the public keys it seals to; the staff app also checks one-time codes and signs
# checkpoints, and never needs the receipt pepper (replies are sealed to the MAC'd receipt key).
INTAKE_SECRETS = ("receipt_pepper", "key_integrity_key")
STAFF_SECRETS = ("totp_key", "key_integrity_key", "audit_signing_key")


def without_audit_signing_key(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` for a process whose checkpoint signer runs on another host (`daylight audit
    signer`): it verifies with the configured verifier key and never holds the signing key."""
    return tuple(name for name in names if name != "audit_signing_key")


def secret_env_var(name: str) -> str:
    """The variable holding secret `name` itself, e.g. DAYLIGHT_SECRET_RECEIPT_PEPPER."""
    return ENV_PREFIX + name.upper()


def secret_from_environment(name: str) -> bool:
    """Whether the environment names a source for secret `name` (the secrets dir file is then unused)."""
    return secret_env_var(name) in os.environ or f"{secret_env_var(name)}_FILE" in os.environ


def create_server_secrets(secrets_dir: Path) -> ServerSecrets:
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    values = {name: os.urandom(SECRET_BYTES) for name in SECRET_NAMES}
    for name, value in values.items():
        # O_EXCL: an existing organisation's secrets are never overwritten.
        fd = os.open(secrets_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(value).decode() + "\n")
    return ServerSecrets(**values)


def load_server_secrets(secrets_dir: Path, names: tuple[str, ...] = SECRET_NAMES) -> ServerSecrets:
    """The secrets ``names`` (all four by default), each from its first source (module docstring).

    Raises SecretsUnavailable when one has no source, PermissionError when its
    file is open to group or others, InvalidServerSecret when a source is
    malformed or ambiguous.
    """
    return ServerSecrets(**{name: read_server_secret(name, secrets_dir)[0] for name in names})


def read_server_secret(name: str, secrets_dir: Path) -> tuple[bytes, str]:
    """One secret and where it came from (a variable name or a path: fit to print, unlike the value)."""
    environ = os.environ
    direct = secret_env_var(name)
    indirect = f"{direct}_FILE"
    if direct in environ and indirect in environ:
        raise InvalidServerSecret(f"both {direct} and {indirect} are set: unset one of them")
    if direct in environ:
        # The least private source: the value is readable in /proc/<pid>/environ by the
        # same user and root, is inherited by child processes (pg_dump in `daylight
        # backup`) and shows in `docker inspect`, so docs/deploy.md steers to `_FILE`.
        # DESIGN 4 allows it; it ranks first so that a value set on purpose is never
        # silently shadowed by a stale file in the secrets dir.
        origin = f"environment variable {direct}"
        return _decoded(environ[direct], origin), origin
    if indirect in environ:
        path = Path(environ[indirect])
        origin = f"file {path} (named by {indirect})"
        if not path.is_absolute():
            # A relative path would depend on the working directory, which differs
            # between the service and an operator's shell running `daylight doctor`.
            raise InvalidServerSecret(f"{indirect} must be an absolute path")
        try:
            return _decoded(_read_private(path), origin), origin
        except FileNotFoundError:
            raise InvalidServerSecret(f"{indirect} names {path}, which does not exist") from None
    path = secrets_dir / name
    origin = f"file {path}"
    try:
        return _decoded(_read_private(path), origin), origin
    except FileNotFoundError as exc:
        raise SecretsUnavailable from exc


def _read_private(path: Path) -> bytes:
    # The mode is checked on the descriptor that is read, not on the path before
    # opening it, so a file swapped in between cannot slip past the check.
    with path.open("rb") as handle:
        if os.fstat(handle.fileno()).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            # Another local account able to read it could test receipts, mint
            # staff one-time codes or sign audit checkpoints.
            raise PermissionError(f"{path} must be readable by its owner only (chmod 600)")
        return handle.read()


def _decoded(raw: str | bytes, origin: str) -> bytes:
    # Messages name the origin only: a value echoed into a log or a terminal
    # scrollback would be a leaked secret.
    try:
        value = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidServerSecret(f"{origin} is not valid base64") from None
    if len(value) != SECRET_BYTES:
        raise InvalidServerSecret(
            f"{origin} must be base64 of exactly {SECRET_BYTES} bytes, not {len(value)}"
        )
    return value
