"""Settings: one immutable object built once per process and handed to the app factories.

Nothing is read at import time, so tests build their own ``Settings`` and two
apps with different settings can live in one process.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024

# The data dir may carry a small env file written by `daylight init`/`demo`
# (environment, nothing secret), so `daylight serve --data-dir DIR` needs no flags.
DATA_DIR_ENV_FILE = "daylight.env"
# The operator's settings file (docs/deploy.md: /etc/daylight/daylight.env), named by
# `daylight --env-file PATH` or by this variable: see `settings_from_env_file`.
ENV_FILE_VARIABLE = "DAYLIGHT_ENV_FILE"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


# The least Argon2id memory (KiB) per time cost, from the OWASP Password Storage Cheat Sheet:
# equally strong pairs at parallelism 1; a time cost past 5 needs what 5 needs.
ARGON2_MEMORY_FLOOR_KIB = {1: 47104, 2: 19456, 3: 12288, 4: 9216, 5: 7168}


def argon2_memory_floor_kib(time_cost: int) -> int:
    return ARGON2_MEMORY_FLOOR_KIB[min(max(time_cost, 1), max(ARGON2_MEMORY_FLOOR_KIB))]


def describe_argon2_floor() -> str:
    pairs = ", ".join(
        f"t={t}{'+' if t == max(ARGON2_MEMORY_FLOOR_KIB) else ''}: {kib} KiB ({kib // 1024} MiB)"
        for t, kib in ARGON2_MEMORY_FLOOR_KIB.items()
    )
    return f"OWASP's minimum for Argon2id, memory_cost_kib per time_cost: {pairs}"


class Argon2Cost(BaseModel):
    """Argon2id cost for staff password derivation (RFC 9106 second recommended option).

    A model, not settings of its own: only `Settings` reads the environment (DAYLIGHT_ARGON2__*),
    so an unprefixed TIME_COST or MEMORY_COST_KIB in the environment changes nothing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_cost: int = Field(default=3, ge=1)
    memory_cost_kib: int = Field(default=64 * 1024, ge=8)
    parallelism: int = Field(default=1, ge=1)
    # Production refuses a cost below the floor unless this says it is a test suite's, whose
    # logins must be fast. `daylight doctor` fails on such a cost whatever this says.
    allow_below_floor_for_tests: bool = False

    def below_floor(self) -> str | None:
        """Why this cost is below the floor, or None when it is not."""
        floor = argon2_memory_floor_kib(self.time_cost)
        if self.memory_cost_kib >= floor:
            return None
        return (
            f"Argon2id time_cost={self.time_cost} memory_cost_kib={self.memory_cost_kib} is below the "
            f"floor: at time_cost={self.time_cost} memory_cost_kib must be at least {floor} "
            f"({describe_argon2_floor()})."
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DAYLIGHT_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    data_dir: Path = Path("var")
    # Overrides the embedded SQLite file in the data dir, e.g.
    # postgresql+psycopg://user@host/db. SecretStr: it may carry a password.
    database_url: SecretStr | None = None
    environment: Environment = Environment.PRODUCTION

    # Validated even when defaulted: a weak cost refuses to start in production (below).
    argon2: Argon2Cost = Field(default_factory=Argon2Cost, validate_default=True)
    # Each Argon2id run holds memory_cost_kib (64 MiB by default) until it ends: at most
    # argon2_max_concurrent run at once per process (None: one per core it may use), so a burst
    # of logins costs at most that many times the memory cost. A login that finds them all busy
    # waits argon2_wait_seconds for a turn, then is answered 503 with Retry-After
    # (app.auth.password_keys, "The derivation gate"). 2 s is about ten runs at the default cost
    # (~0.2 s each) per turn: staff logging in together queue rather than fail, while a flood
    # holds a worker thread and the login's database slot no longer than that.
    argon2_max_concurrent: int | None = Field(default=None, ge=1)
    argon2_wait_seconds: float = Field(default=2.0, ge=0)

    # Request bounds: a JSON body over max_json_bytes is refused with 413 before parsing.
    max_json_bytes: int = Field(default=1 * MiB, ge=1024)
    max_request_bytes: int = Field(default=110 * MiB, ge=1024)
    max_files_per_tip: int = Field(default=10, ge=0)
    max_file_bytes: int = Field(default=100 * MiB, ge=1)
    max_form_parts: int = Field(default=64, ge=1)
    # A client that stops sending mid-body is cut off after this many seconds
    # of silence, and at most this many uploads stream at once: slow clients
    # must not be able to hold the service's workers or connections.
    request_idle_timeout_seconds: float = Field(default=60, gt=0)
    max_concurrent_uploads: int = Field(default=64, ge=1)
    # The idle timer restarts on every chunk, so a client trickling a few bytes a second
    # would never trip it: an upload must also end within a deadline and, once past its
    # grace period, keep up a minimum average rate (app.web.request_body). Small bodies
    # (JSON, forms) must arrive whole within small_body_deadline_seconds.
    upload_deadline_seconds: float = Field(default=900, gt=0)
    upload_min_bytes_per_second: int = Field(default=2048, ge=0)
    upload_rate_grace_seconds: float = Field(default=20, ge=0)
    small_body_deadline_seconds: float = Field(default=30, gt=0)
    # Admission (app.web.admission), per process. Requests in flight: past max_requests_in_flight
    # a request waits in the event loop (no thread, no connection held) for at most
    # admission_wait_seconds, and only admission_queue of them wait; the rest are answered
    # 503 with Retry-After at once. Of those, at most max_database_requests hold a database
    # session at once (the same wait and queue bounds); the connection pool is sized from it,
    # so an admitted request never waits for a connection another one holds.
    max_requests_in_flight: int = Field(default=64, ge=1)
    max_database_requests: int = Field(default=6, ge=1)
    admission_queue: int = Field(default=64, ge=0)
    admission_wait_seconds: float = Field(default=2.0, ge=0)
    retry_after_seconds: int = Field(default=2, ge=1)
    # How long a statement may wait for a pooled connection or a database answer before the
    # request is refused with 503 (the database is unreachable or overloaded).
    database_timeout_seconds: float = Field(default=5.0, gt=0)
    # Photos are re-encoded from pixels before encryption, which drops EXIF (GPS,
    # camera, times), XMP, ICC and text chunks. Decoding needs the whole picture in
    # memory: bounded in bytes and in pixels (a small file can claim a huge canvas).
    # Retention (DESIGN 6): rejected tips, and tips nobody took out of `new`, are
    # crypto-shredded by `daylight purge` this many days after their last activity.
    retention_rejected_days: int = Field(default=90, ge=1)
    retention_stale_new_days: int = Field(default=365, ge=1)
    # The queue's age badges (days): a report still new or unanswered this long is marked "ageing",
    # then "overdue"; a submitter's message unread this long is marked the same way.
    queue_age_warning_days: int = Field(default=3, ge=1)
    queue_age_overdue_days: int = Field(default=7, ge=1)
    submitter_message_warning_days: int = Field(default=1, ge=1)
    submitter_message_overdue_days: int = Field(default=3, ge=1)
    # Response clocks (days, as tips carry only the day they arrived, never the time): a report
    # still new this many days after it arrived is overdue for a claim, urgent ones sooner; a
    # submitter's answer unread for `submitter_message_overdue_days` is overdue too. Overdue
    # reports are marked in the queue and leads get one reminder each (`daylight notify`).
    claim_urgent_within_days: int = Field(default=1, ge=0)
    claim_within_days: int = Field(default=3, ge=0)
    # Leads are warned this many days before the retention purge deletes a report.
    retention_warning_days: int = Field(default=14, ge=1)

    # Content-free notifications (app.notify). The SMTP server notices go through:
    # smtp+starttls://USER:PASSWORD@HOST:587 or smtps://USER:PASSWORD@HOST:465 (smtp://HOST:PORT
    # only on loopback). SecretStr: it carries the password. Unset, no mail is sent.
    smtp_url: SecretStr | None = None
    mail_from: str | None = Field(default=None, pattern=r"^[^@\s<>]+@[^@\s<>]+$", max_length=200)
    # A CA certificate file trusted for the SMTP server and the webhook instead of the system's
    # CAs (a private CA). Unset: the system's CAs.
    notify_ca_file: Path | None = None
    # Immediate notices wait this long and go out together: a burst of urgent reports is one
    # mail per member, and the mail's time tells the provider less about each report.
    notify_batch_seconds: int = Field(default=60, ge=1, le=3600)
    # How often `daylight serve` runs the sender in the background (0: never; use `daylight
    # notify` from a timer instead).
    notify_interval_seconds: float = Field(default=30, ge=0, le=3600)
    # Figures derived from cases that leave the system (statistics export, printable report)
    # withhold any count below this, to protect small communities.
    statistics_min_count: int = Field(default=3, ge=1)
    # Where attachment ciphertext lives: "data_dir" (one node) or "database" (several app
    # nodes on one PostgreSQL, docs/deploy.md).
    blob_storage: Literal["data_dir", "database"] = "data_dir"
    strip_attachment_metadata: bool = True
    # Documents (PDF, Office, OpenDocument) are cleaned in a child process that may use at most
    # this much memory and time (app.intake.cleaning.documents); one that fails, or is larger than
    # max_document_clean_bytes, is stored as sent and staff are warned, as for audio and video.
    # Held whole while it arrives (cleaning needs random access), against image_memory_budget_bytes.
    max_document_clean_bytes: int = Field(default=64 * MiB, ge=1024)
    document_cleaning_seconds: float = Field(default=30, gt=0)
    document_cleaning_memory_bytes: int = Field(default=1024 * MiB, ge=256 * MiB)
    max_image_bytes: int = Field(default=32 * MiB, ge=1024)
    # At most HARD_PIXEL_CEILING (app.intake.cleaning), Pillow's own backstop.
    max_image_pixels: int = Field(default=50_000_000, ge=1, le=64 * 1024 * 1024)
    # Everything photo cleaning holds at once per process (each worker has its own): pictures
    # held while they stream in, and each one being cleaned, priced from its header before any
    # pixel is decoded (app.intake.cleaning, "Memory"). A picture that alone needs more is
    # refused (413); one that finds the rest in use waits a few seconds, then gets a 503.
    image_memory_budget_bytes: int = Field(default=512 * MiB, ge=64 * MiB)

    # When a submitter's duress code is used (app.intake.duress), mark the report for staff as
    # "submitter may be under duress" and stop replies. Off: the code only shows its harmless
    # page and nothing at all is written, so not even the database learns it was used.
    duress_flags_report: bool = False

    # The audit log's name in its signed checkpoints (C2SP tlog-checkpoint
    # "origin"): set it to something unique to the organisation.
    audit_log_origin: str = Field(default="daylight.local/audit", pattern=r"^[^\s]+$", max_length=200)
    # How soon a committed audit event is covered by a signed checkpoint: the staff app's
    # signer looks for new events this often and signs at most one checkpoint each time,
    # however many requests committed in between. Events newer than the last checkpoint are
    # protected by nothing (someone holding the database file could edit them), so short.
    audit_checkpoint_delay_seconds: float = Field(default=1.0, ge=0.05, le=3600)
    # `daylight audit verify` fails when an event has gone unsigned longer than this: the
    # delay above plus room for a busy or restarting signer.
    audit_max_unsigned_seconds: int = Field(default=30, ge=1)
    # How many registered witnesses must cosign a checkpoint before it counts as witnessed.
    audit_witnesses_required: int = Field(default=1, ge=1, le=50)
    # The log's C2SP verifier key, for a deployment whose checkpoint signer runs on another
    # host (`daylight audit signer`): this process then never holds the signing key and only
    # verifies with this. Unset, the key is derived from the audit signing key held here.
    audit_verifier_key: str | None = Field(default=None, max_length=300)

    # The staff app's public origin (scheme://host[:port]) as members' browsers see it. Passkeys
    # are bound to it: an assertion made on any other origin (a phishing relay) is refused. Unset,
    # passkeys work only in development on loopback, against the request's own origin.
    staff_origin: str | None = Field(default=None, pattern=r"^https?://[A-Za-z0-9.\-\[\]:]+$", max_length=200)

    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=8, ge=1)

    @field_validator("argon2")
    @classmethod
    def _argon2_floor_in_production(cls, cost: Argon2Cost, info: ValidationInfo) -> Argon2Cost:
        # A field validator, not a model one: its error quotes this field's input only, never
        # the database URL (which may hold a password). `environment` is validated before.
        production = info.data.get("environment") is Environment.PRODUCTION
        if production and not cost.allow_below_floor_for_tests and (problem := cost.below_floor()):
            raise ValueError(
                f"{problem} Production refuses it: raise DAYLIGHT_ARGON2__MEMORY_COST_KIB "
                "or DAYLIGHT_ARGON2__TIME_COST (the default is t=3, 65536 KiB)."
            )
        return cost

    @property
    def database_path(self) -> Path:
        return self.data_dir / "daylight.sqlite3"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def audit_signer_state_path(self) -> Path:
        """The checkpoint signer's memory of the last checkpoint it signed, kept out of the
        database so that a database writer cannot make it sign a rewritten history."""
        return self.data_dir / "audit-signer-state.json"

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+pysqlite:///{self.database_path}"

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT


def load_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a data dir. Where each value comes from, first match wins:

    1. the environment: real variables, then those of the operator's env file, which
       `settings_from_env_file` (every `daylight` command, `serve` and its workers included)
       adds to the environment without replacing a real one;
    2. the data dir's own env file (`DATA_DIR_ENV_FILE`, written by init: the environment only);
    3. the defaults above.
    """
    return Settings(
        _env_file=_data_dir_env_file(data_dir),
        data_dir=data_dir,
        **overrides,  # type: ignore[arg-type]
    )


def _data_dir_env_file(data_dir: Path) -> Path | None:
    env_file = data_dir / DATA_DIR_ENV_FILE
    return env_file if env_file.exists() else None


class EnvFileError(Exception):
    """The env file named by --env-file or DAYLIGHT_ENV_FILE cannot be used; nothing ran."""


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of an env file (KEY=value lines, as systemd's EnvironmentFile= reads them).

    A file that is missing or unreadable is an error, never an empty file: a command run
    without the deployment's settings would open another database (a new, empty SQLite file).
    Values are taken as written: no ${VAR} expansion (a password may hold a dollar sign).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvFileError(f"the settings file {path} does not exist") from None
    except PermissionError:
        raise EnvFileError(
            f"the settings file {path} cannot be read by this user: run the command as the "
            "service's user (sudo -u daylight ...), or make the file readable by it (root:daylight, 0640)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise EnvFileError(f"the settings file {path} cannot be read: {reason}") from None
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {name: value for name, value in values.items() if value is not None}


def env_file_path(value: str) -> Path:
    return Path(value).expanduser().absolute()


@contextlib.contextmanager
def settings_from_env_file(path: Path | None) -> Iterator[Path | None]:
    """The variables of the operator's env file (``path``, else the one DAYLIGHT_ENV_FILE names)
    in the environment while the block runs; yields the file read, or None.

    A variable already in the environment keeps its value (a real variable wins over the file),
    and each one the file adds is removed again afterwards. Through the environment rather than
    `Settings` alone, so that everything reads the same values: the server secrets
    (DAYLIGHT_SECRET_*_FILE), libpq (PG*) for pg_dump, and the worker processes `serve` spawns.
    """
    if path is None and os.environ.get(ENV_FILE_VARIABLE):
        path = env_file_path(os.environ[ENV_FILE_VARIABLE])
    if path is None:
        yield None
        return
    added = {name: value for name, value in read_env_file(path).items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield path
    finally:
        for name, value in added.items():
            if os.environ.get(name) == value:
                del os.environ[name]


class _WhereSettings(BaseSettings):
    """The two settings that say which deployment a data dir belongs to, from the same sources
    as `Settings` and nothing else: a command can name its database, and refuse another
    deployment's, before its own settings are loaded (`demo` loads them with overrides)."""

    model_config = SettingsConfigDict(env_prefix="DAYLIGHT_", env_nested_delimiter="__", extra="ignore")

    database_url: SecretStr | None = None
    audit_log_origin: str = Settings.model_fields["audit_log_origin"].default


def where_settings_point(data_dir: Path) -> tuple[str, str]:
    """The SQLAlchemy URL (it may hold a password) and the audit log origin that
    `load_settings(data_dir)` gives."""
    where = _WhereSettings(_env_file=_data_dir_env_file(data_dir))
    settings = Settings.model_construct(data_dir=data_dir, database_url=where.database_url)
    return settings.sqlalchemy_url, where.audit_log_origin
