"""`daylight doctor`: check a deployment and say what is wrong and how to fix it.

Each check gives "ok", "warn" (works, but weaker than it should be) or "fail"
(broken or unsafe), with the fix. The command exits 1 when anything fails.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, or_, select

import app.models  # noqa: F401 - every model, so every column naming a blob is registered (app.kit.blobs)
from app.audit_log.assessment import assess_log
from app.audit_log.models import AuditEvent
from app.audit_log.signer import log_verifier
from app.audit_log.witnesses import registered_witnesses
from app.auth.models import StaffAccount
from app.custody.models import IntakeKey, IntakeKeyGrant, IntakeKeyRotation
from app.entrypoints.apps import held_secret_names
from app.entrypoints.deployment import (
    Holding,
    no_organisation,
    shown_database,
    sqlite_file_missing,
    what_the_database_holds,
)
from app.intake.orphans import find_orphan_blobs
from app.kit.config import Environment, Settings
from app.kit.db import READ_ONLY_OPTION, Database
from app.kit.server_secrets import (
    ENV_PREFIX,
    SECRET_BYTES,
    SECRET_NAMES,
    InvalidServerSecret,
    load_server_secrets,
    read_server_secret,
    secret_env_var,
    secret_from_environment,
)
from app.notify import channels
from app.notify.sender import backlog
from app.schema import migration_heads

CLOCK_SLACK = dt.timedelta(minutes=5)
# Doctor runs beside live servers, perhaps on another node: only blobs untouched for longer
# than any upload lasts are counted, so an upload still streaming is never called an orphan.
ORPHAN_MIN_AGE = dt.timedelta(days=1)


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    verdict: Verdict
    detail: str


def _private(path: Path) -> bool:
    return not path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def check_secrets(settings: Settings) -> list[Finding]:
    findings: list[Finding] = []
    secrets_dir = settings.secrets_dir
    from_files = [name for name in SECRET_NAMES if not secret_from_environment(name)]
    if from_files and not secrets_dir.is_dir():
        return [Finding("secrets", Verdict.FAIL, f"{secrets_dir} is missing: run `daylight init`.")]
    if secrets_dir.is_dir() and not _private(secrets_dir):
        findings.append(
            Finding("secrets dir", Verdict.FAIL, f"{secrets_dir} is readable by others: chmod 700 it.")
        )
    for name in SECRET_NAMES:
        if name in from_files:
            findings += _check_secret_file(name, secrets_dir / name)
        else:
            findings += _check_secret_from_environment(name, secrets_dir)
    # A misspelt variable would leave the secrets dir file in use while the operator
    # believes the environment supplies the secret.
    known = {secret_env_var(name) + suffix for name in SECRET_NAMES for suffix in ("", "_FILE")}
    if unknown := sorted(v for v in os.environ if v.startswith(ENV_PREFIX) and v not in known):
        findings.append(
            Finding(
                "secrets env",
                Verdict.WARN,
                f"{', '.join(unknown)} set but not read: names are {ENV_PREFIX}<NAME>[_FILE] "
                f"with NAME one of {', '.join(name.upper() for name in SECRET_NAMES)}.",
            )
        )
    if all(finding.verdict is Verdict.OK for finding in findings):
        findings.append(Finding("secrets", Verdict.OK, "all four present, private and well-formed"))
    return findings


def _check_secret_file(name: str, path: Path) -> list[Finding]:
    check = f"secret {name}"
    if not path.exists():
        return [
            Finding(
                check,
                Verdict.FAIL,
                f"{path} is missing: restore it from your backup (it cannot be regenerated "
                "without breaking receipts, sessions or the audit log).",
            )
        ]
    if not _private(path):
        return [Finding(check, Verdict.FAIL, f"{path} is readable by others: chmod 600 it.")]
    try:
        value = base64.b64decode(path.read_text().strip(), validate=True)
    except (binascii.Error, ValueError):
        return [Finding(check, Verdict.FAIL, f"{path} is not base64: restore it.")]
    if _placeholder(value):
        return [
            Finding(
                check,
                Verdict.FAIL,
                f"{path} looks like a placeholder (not 32 bytes, or repetitive): restore the real one.",
            )
        ]
    return []


def _check_secret_from_environment(name: str, secrets_dir: Path) -> list[Finding]:
    check = f"secret {name}"
    variable = secret_env_var(name)
    try:
        value, origin = read_server_secret(name, secrets_dir)
    except (InvalidServerSecret, OSError) as exc:
        # The loader's messages name the variable or path, never the value.
        return [
            Finding(
                check,
                Verdict.FAIL,
                f"{exc}. Set {variable} to the base64 of the 32-byte secret, or {variable}_FILE "
                "to the absolute path of an owner-only (0600) file holding it, not both; or unset "
                f"both to use {secrets_dir / name}.",
            )
        ]
    if _placeholder(value):
        return [
            Finding(
                check,
                Verdict.FAIL,
                f"{origin} looks like a placeholder (repetitive): set it to the real secret.",
            )
        ]
    return [Finding(check, Verdict.OK, f"from the {origin}")]


def _placeholder(value: bytes) -> bool:
    return len(value) != SECRET_BYTES or len(set(value)) < 8


def check_database(settings: Settings, database: Database) -> list[Finding]:
    try:
        with database.engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
            holding = what_the_database_holds(connection) if current else Holding.NOTHING
    except Exception as exc:  # any failure to connect is the finding itself
        return [
            Finding(
                "database",
                Verdict.FAIL,
                f"{shown_database(settings.sqlalchemy_url)} unreachable ({type(exc).__name__}): check "
                "DAYLIGHT_DATABASE_URL (or --env-file) and that the server is up.",
            )
        ]
    if holding is not Holding.ORGANISATION:
        return [Finding("database", Verdict.FAIL, f"{no_organisation(settings)}.")]
    heads = set(migration_heads())
    if current != heads:
        return [
            Finding(
                "database",
                Verdict.FAIL,
                "not at the latest migration: run `daylight init` on a new "
                "data dir, or upgrade the installed package and restart.",
            )
        ]
    return [
        Finding(
            "database",
            Verdict.OK,
            f"{shown_database(settings.sqlalchemy_url)}: reachable, at the latest migration",
        )
    ]


def check_keys(database: Database) -> list[Finding]:
    with database.transaction() as session:
        has_key = session.scalar(select(func.count()).select_from(IntakeKey)) or 0
        holders = session.scalar(select(func.count(func.distinct(IntakeKeyGrant.account_id)))) or 0
        rotation = session.scalars(select(IntakeKeyRotation)).first()
    if not has_key:
        return [Finding("intake key", Verdict.FAIL, "none: run `daylight init`.")]
    if rotation is not None:
        # The old key is still stored, and the new one sealed to it: whatever made the operator
        # rotate is not dealt with until the rotation ends.
        return [
            Finding(
                "intake key",
                Verdict.FAIL,
                f"a rotation from version {rotation.from_version} to {rotation.to_version} is unfinished: "
                "run `daylight keys rotate` again to resume it.",
            )
        ]
    if holders == 0:
        return [
            Finding(
                "intake key",
                Verdict.WARN,
                "nobody holds it: reports cannot be read until a lead is granted it "
                "(a new organisation: `daylight keys grant-first`; all holders lost: "
                "`daylight keys recover`).",
            )
        ]
    if holders == 1:
        return [
            Finding(
                "intake key",
                Verdict.WARN,
                "one member holds it: grant it to a second, so that one lost "
                "password does not leave only the recovery key.",
            )
        ]
    return [Finding("intake key", Verdict.OK, f"held by {holders} members")]


def check_audit(settings: Settings, database: Database, now: dt.datetime) -> list[Finding]:
    secrets = load_server_secrets(settings.secrets_dir, held_secret_names(settings, SECRET_NAMES))
    log_key = log_verifier(settings, secrets)
    with database.transaction() as session:
        session.connection(execution_options={READ_ONLY_OPTION: True})
        trusted, forged = registered_witnesses(session, secrets.key_integrity_key)
        assessment = assess_log(
            session,
            log_key,
            max_unsigned=dt.timedelta(seconds=settings.audit_max_unsigned_seconds),
            witness_keys=[witness.key for witness in trusted],
            witnesses_required=settings.audit_witnesses_required,
            now=now,
        )
        session.rollback()
    report = assessment.report
    if not report.ok:
        findings = [
            Finding(
                "audit log",
                Verdict.FAIL,
                f"does not verify (first bad event: {report.first_bad_seq}): "
                "run `daylight audit verify` and investigate; do not repair.",
            )
        ]
    elif assessment.problems:
        findings = [Finding("audit log", Verdict.FAIL, assessment.problems[0])]
    else:
        findings = [Finding("audit log", Verdict.OK, f"{report.size} events verify and are signed")]
    if forged:
        findings.append(
            Finding(
                "audit witnesses",
                Verdict.FAIL,
                f"{len(forged)} witness registration(s) were not made by this server: "
                "someone wrote the database directly; investigate.",
            )
        )
    elif not trusted:
        findings.append(
            Finding(
                "audit witnesses",
                Verdict.WARN,
                "no witness registered: nothing outside this server remembers the log "
                "(docs/deploy.md, 'The audit log').",
            )
        )
    else:
        findings.append(
            Finding(
                "audit witnesses",
                Verdict.OK,
                f"{len(trusted)} registered; witnessed up to size {assessment.witnessing.witnessed_size}",
            )
        )
    with database.transaction() as session:
        latest = session.scalar(select(func.max(AuditEvent.occurred_at)))
    if latest is not None:
        latest = latest if latest.tzinfo else latest.replace(tzinfo=dt.UTC)
        if latest - now > CLOCK_SLACK:
            findings.append(
                Finding(
                    "clock",
                    Verdict.FAIL,
                    "the clock is behind the latest audit event: fix NTP "
                    "before serving (checkpoint times would go backwards).",
                )
            )
        else:
            findings.append(Finding("clock", Verdict.OK, "not behind the audit log"))
    return findings


def check_orphan_blobs(
    settings: Settings, database: Database, now: dt.datetime, older_than: dt.timedelta = ORPHAN_MIN_AGE
) -> list[Finding]:
    # A count only: blob names are attachment ids, and a report is often pasted somewhere.
    orphans = len(find_orphan_blobs(settings, database, older_than=older_than, now=now))
    if not orphans:
        return [Finding("orphan blobs", Verdict.OK, "none: every stored blob belongs to an attachment")]
    return [
        Finding(
            "orphan blobs",
            Verdict.WARN,
            f"{orphans} blob(s) belong to no attachment (left by a server stopped mid-upload): unreadable "
            "ciphertext, but they use space. `daylight serve` removes them when it next starts.",
        )
    ]


def check_argon2(settings: Settings) -> list[Finding]:
    """The Argon2id cost against OWASP's minimum, whatever the environment: below it, a stolen
    database gives up passwords fast. Production settings refuse it (unless marked a test
    suite's), development ones take it; either way it is not a deployment's cost."""
    cost = settings.argon2
    if problem := cost.below_floor():
        return [
            Finding(
                "argon2",
                Verdict.FAIL,
                f"{problem} Raise DAYLIGHT_ARGON2__MEMORY_COST_KIB or DAYLIGHT_ARGON2__TIME_COST "
                "(the default is t=3, 65536 KiB).",
            )
        ]
    return [
        Finding(
            "argon2",
            Verdict.OK,
            f"t={cost.time_cost}, {cost.memory_cost_kib} KiB, p={cost.parallelism}: "
            "at or above OWASP's minimum",
        )
    ]


def check_password_verifiers(settings: Settings, database: Database) -> list[Finding]:
    """Accounts whose verifier was derived at a lower cost than the current settings (say,
    before the operator raised it): a stolen database gives their passwords up faster.
    A successful login derives the verifier again at the current cost, the same key pair."""
    cost = settings.argon2
    with database.transaction() as session:
        weaker = (
            session.scalar(
                select(func.count())
                .select_from(StaffAccount)
                .where(
                    StaffAccount.login_verifier.is_not(None),
                    or_(
                        StaffAccount.argon2_time_cost < cost.time_cost,
                        StaffAccount.argon2_memory_cost_kib < cost.memory_cost_kib,
                    ),
                )
            )
            or 0
        )
    if weaker:
        return [
            Finding(
                "password verifiers",
                Verdict.WARN,
                f"{weaker} account(s) have a verifier derived at a lower Argon2id cost than "
                f"t={cost.time_cost}, {cost.memory_cost_kib} KiB: each is derived again at the "
                "current cost when its member next logs in (accounts nobody logs in to keep theirs).",
            )
        ]
    return [Finding("password verifiers", Verdict.OK, "none derived at a lower cost than the current one")]


def check_settings(settings: Settings) -> list[Finding]:
    findings = []
    if settings.environment is Environment.DEVELOPMENT:
        findings.append(
            Finding(
                "environment",
                Verdict.FAIL,
                "development mode (plain-HTTP session cookie): set DAYLIGHT_ENVIRONMENT=production.",
            )
        )
    else:
        findings.append(Finding("environment", Verdict.OK, "production"))
    if settings.audit_log_origin == Settings.model_fields["audit_log_origin"].default:
        findings.append(
            Finding(
                "audit origin",
                Verdict.WARN,
                "the default name: set DAYLIGHT_AUDIT_LOG_ORIGIN to one unique to your organisation.",
            )
        )
    if not settings.strip_attachment_metadata:
        findings.append(Finding("attachments", Verdict.WARN, "photo metadata stripping is off."))
    if settings.data_dir.exists() and not _private(settings.data_dir):
        findings.append(
            Finding("data dir", Verdict.FAIL, f"{settings.data_dir} is readable by others: chmod 700.")
        )
    # `daylight serve` never reads X-Forwarded-For (proxy_headers off in code, not a setting).
    findings.append(Finding("proxy headers", Verdict.OK, "never trusted: no client address is ever read"))
    return findings


def check_mail_settings(settings: Settings) -> list[Finding]:
    """The mail server's URL parses, and notices can say where to sign in."""
    if settings.smtp_url is None:
        return [Finding("notices", Verdict.OK, "no mail server set (smtp_url): no notices by e-mail")]
    try:
        channels.parse_smtp_url(
            settings.smtp_url.get_secret_value(),
            sender=settings.mail_from or "daylight@localhost",
            ca_file=settings.notify_ca_file,
        )
    except ValueError as refusal:  # its message never repeats the URL, which holds a password
        return [Finding("notices", Verdict.FAIL, f"smtp_url: {refusal}")]
    findings = []
    if settings.mail_from is None:
        findings.append(
            Finding("notices", Verdict.WARN, "mail_from is not set: notices are sent as daylight@localhost")
        )
    if settings.staff_origin is None:
        findings.append(
            Finding(
                "notices",
                Verdict.WARN,
                "staff_origin is not set: the links in notices are paths without the staff app's address",
            )
        )
    return findings or [Finding("notices", Verdict.OK, "a mail server is set")]


def check_deliveries(settings: Settings, database: Database) -> list[Finding]:
    with database.transaction() as session:
        waiting = backlog(session)
    if settings.smtp_url is None and waiting.email_due:
        return [
            Finding(
                "notice delivery",
                Verdict.WARN,
                f"{waiting.email_due} e-mail notices wait for a mail server: set smtp_url here, or "
                "make sure a node that has one runs the sender",
            )
        ]
    if waiting.failing:
        reason = waiting.last_errors[0][1] if waiting.last_errors else "unknown"
        return [
            Finding(
                "notice delivery",
                Verdict.WARN,
                f"{waiting.failing} notices failed at least once and wait to be tried again "
                f"(last reason: {reason}); see /admin/notifications",
            )
        ]
    return [Finding("notice delivery", Verdict.OK, f"{waiting.pending} notices waiting, none failing")]


def run_checks(settings: Settings, now: dt.datetime | None = None) -> list[Finding]:
    now = now or dt.datetime.now(dt.UTC)
    findings = (
        check_settings(settings)
        + check_argon2(settings)
        + check_secrets(settings)
        + check_mail_settings(settings)
    )
    if sqlite_file_missing(settings.sqlalchemy_url):
        # Never created by looking: an empty SQLite file would only hide the mistake.
        return [*findings, Finding("database", Verdict.FAIL, f"{no_organisation(settings)}.")]
    database = Database.from_settings(settings)
    try:
        database_findings = check_database(settings, database)
        findings += database_findings
        if all(finding.verdict is Verdict.OK for finding in database_findings):
            steps: list[Callable[[], list[Finding]]] = [
                lambda: check_keys(database),
                lambda: check_password_verifiers(settings, database),
                lambda: check_orphan_blobs(settings, database, now),
                lambda: check_deliveries(settings, database),
            ]
            if all(f.verdict is not Verdict.FAIL for f in findings if f.check.startswith("secret")):
                steps.append(lambda: check_audit(settings, database, now))
            for step in steps:
                findings += step()
    finally:
        database.engine.dispose()
    return findings
