"""Which deployment a data dir belongs to, and whether a database holds an organisation.

`daylight init` records in the data dir (IDENTITY_FILE, mode 0600) the database it used and
the audit log's origin. Every command compares its settings with that record before it
touches anything, and refuses settings that point elsewhere, naming what differs: a command
run without the deployment's settings (`sudo -u daylight daylight ...` without the env file)
would otherwise open a new, empty SQLite file, and a wrong origin would make every signed
checkpoint look forged (a false tamper alarm).

The record names the database without its password: the URL is rebuilt from its parts
(driver, user, host, port, database name, search_path), never rendered from the settings.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from sqlalchemy import URL, Connection, inspect, make_url, select
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from app.audit_log.models import AuditEvent
from app.custody.models import IntakeKey
from app.kit.config import Settings
from app.kit.db import READ_ONLY_OPTION, Database

IDENTITY_FILE = "deployment.json"
FORMAT = "daylight-deployment/v1"
# Where docs/deploy.md puts the service's settings; named in messages as the usual fix.
SERVICE_ENV_FILE = "/etc/daylight/daylight.env"
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


class DeploymentRefused(Exception):
    """These settings must not be used with this data dir (or there is nothing to open);
    the message says why and what to do. The CLI prints it and exits 2."""


@dataclass(frozen=True, slots=True)
class DatabaseIdentity:
    """A database as a deployment names it; two settings that give equal ones reach the same data."""

    backend: str
    host: str | None = None
    port: int | None = None
    # The file, for SQLite: relative to the data dir when it is in it (the usual case, so that a
    # data dir copied or restored elsewhere is still itself); absolute otherwise.
    name: str | None = None
    user: str | None = None
    schema: str | None = None
    # For people, not compared: the URL without its password.
    url: str = field(default="", compare=False)


@dataclass(frozen=True, slots=True)
class DeploymentIdentity:
    database: DatabaseIdentity
    audit_log_origin: str


def _url(sqlalchemy_url: str) -> URL:
    try:
        return make_url(sqlalchemy_url)
    except ArgumentError:
        # SQLAlchemy's message quotes the whole string, password included.
        raise DeploymentRefused("DAYLIGHT_DATABASE_URL is not a database URL") from None


def _search_path(url: URL) -> str | None:
    options = url.query.get("options")
    words = shlex.split(" ".join((options,) if isinstance(options, str) else options or ()))
    for index, word in enumerate(words):
        setting = words[index + 1] if word == "-c" and index + 1 < len(words) else word.removeprefix("-c")
        if setting.startswith("search_path="):
            return setting.removeprefix("search_path=")
    return None


def database_identity(sqlalchemy_url: str, data_dir: Path) -> DatabaseIdentity:
    url = _url(sqlalchemy_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        name = url.database
        if name and name != ":memory:":
            path = Path(name).expanduser().resolve()
            base = data_dir.resolve()
            name = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
        return DatabaseIdentity(backend, name=name, url=shown_database(sqlalchemy_url))
    host = url.host or _query_value(url, "host")
    return DatabaseIdentity(
        backend,
        host=host.lower() if host else None,
        port=url.port or _DEFAULT_PORTS.get(backend),
        name=url.database,
        user=url.username,
        schema=_search_path(url),
        url=shown_database(sqlalchemy_url),
    )


def _query_value(url: URL, key: str) -> str | None:
    value = url.query.get(key)
    if isinstance(value, tuple):
        return value[0] if value else None
    return value


def shown_database(sqlalchemy_url: str) -> str:
    """The database URL for a message or a log line: its parts without the password, and without
    the query (which may carry one), save the search_path that picks the schema."""
    url = _url(sqlalchemy_url)
    shown = URL.create(
        url.drivername, username=url.username, host=url.host, port=url.port, database=url.database
    ).render_as_string(hide_password=False)
    schema = _search_path(url) if url.get_backend_name() != "sqlite" else None
    return f"{shown} (schema {schema})" if schema else shown


def identity_of(settings: Settings) -> DeploymentIdentity:
    return identity_for(settings.data_dir, settings.sqlalchemy_url, settings.audit_log_origin)


def identity_for(data_dir: Path, sqlalchemy_url: str, audit_log_origin: str) -> DeploymentIdentity:
    return DeploymentIdentity(database_identity(sqlalchemy_url, data_dir), audit_log_origin)


def identity_path(data_dir: Path) -> Path:
    return data_dir / IDENTITY_FILE


_REMOVE_TO_RECORD = (
    "remove it, and the next command run with the deployment's settings records them again "
    f"(check first that they are the service's: {SERVICE_ENV_FILE})"
)


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def read_identity(data_dir: Path) -> DeploymentIdentity | None:
    """The identity `init` recorded, or None for a data dir from before identity files."""
    path = identity_path(data_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise DeploymentRefused(
            f"{path} cannot be read by this user: run the command as the data dir's owner "
            "(sudo -u daylight ...)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DeploymentRefused(
            f"{path} cannot be read ({type(exc).__name__}): {_REMOVE_TO_RECORD}"
        ) from None
    try:
        if document["format"] != FORMAT:
            raise ValueError(document["format"])
        database = dict(document["database"])
        port = database.get("port")
        identity = DeploymentIdentity(
            DatabaseIdentity(
                str(database["backend"]),
                **{key: _optional_str(database.get(key)) for key in ("host", "name", "user", "schema")},
                port=None if port is None else int(port),
                url=str(database.get("url") or ""),
            ),
            str(document["audit_log_origin"]),
        )
    except (KeyError, TypeError, ValueError):
        raise DeploymentRefused(
            f"{path} is not a deployment record this version reads: {_REMOVE_TO_RECORD}"
        ) from None
    return identity


def write_identity(data_dir: Path, identity: DeploymentIdentity) -> Path:
    """Written whole or not at all, owner-only (and, when root writes it, owned like the data dir:
    the service, running as the data dir's owner, must read it)."""
    path = identity_path(data_dir)
    document = {
        "format": FORMAT,
        "about": "Written by daylight init: the database and audit log this data dir belongs to. "
        "Every command refuses settings that point elsewhere. It holds no password.",
        "database": asdict(identity.database),
        "audit_log_origin": identity.audit_log_origin,
    }
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    if os.geteuid() == 0:
        owner = data_dir.stat()
        os.chown(temporary, owner.st_uid, owner.st_gid)
    temporary.replace(path)
    return path


def check_identity(data_dir: Path, current: DeploymentIdentity) -> None:
    """Refuses settings that do not name the deployment `init` recorded in ``data_dir``."""
    recorded = read_identity(data_dir)
    if recorded is None:
        return
    problems = []
    if recorded.database != current.database:
        recorded_url = recorded.database.url
        if (
            recorded.database.backend == "sqlite"
            and recorded.database.name
            and not Path(recorded.database.name).is_absolute()
        ):
            driver = make_url(recorded_url).drivername if recorded_url else "sqlite"
            recorded_url = shown_database(
                str(URL.create(driver, database=str(data_dir / recorded.database.name)))
            )
        problems.append(
            f"this data dir was created for database {recorded_url}; these settings point at "
            f"{current.database.url}: pass --env-file with the service's settings (e.g. --env-file "
            f"{SERVICE_ENV_FILE}) or set DAYLIGHT_DATABASE_URL. If the database has moved on "
            f"purpose, remove {identity_path(data_dir)}: the next command records the new one."
        )
    if recorded.audit_log_origin != current.audit_log_origin:
        problems.append(
            f"audit origin differs: the data dir's log is named {recorded.audit_log_origin!r}, the "
            f"settings say {current.audit_log_origin!r}. The log is not tampered with; these are "
            f"the wrong settings: set DAYLIGHT_AUDIT_LOG_ORIGIN={recorded.audit_log_origin}, or pass "
            f"--env-file with the service's settings (e.g. --env-file {SERVICE_ENV_FILE})."
        )
    if problems:
        raise DeploymentRefused("\n".join(problems))


def record_identity_if_missing(settings: Settings) -> None:
    """A data dir from before identity files (or restored from a backup, which does not carry
    one) is accepted as it is, and its identity is recorded here, once a command has found an
    organisation with these settings: from then on, settings that point elsewhere are refused."""
    if identity_path(settings.data_dir).exists():
        return
    try:
        write_identity(settings.data_dir, identity_of(settings))
    except OSError:
        # A reader without write access to the data dir (an auditor's `audit verify`): the
        # next command run as the owner records it.
        return


class Holding(StrEnum):
    """What a database holds, as `init` and the other commands need to know."""

    NOTHING = "nothing"  # no Daylight schema (or one too old to have intake keys)
    EMPTY_SCHEMA = "empty schema"  # migrated, with no organisation and no audit event
    DATA = "data"  # no intake key, but audit events: not a database init may take
    ORGANISATION = "organisation"


def what_the_database_holds(connection: Connection) -> Holding:
    tables = set(inspect(connection).get_table_names())
    if IntakeKey.__tablename__ not in tables:
        return Holding.NOTHING
    if connection.scalar(select(IntakeKey.version).limit(1)) is not None:
        return Holding.ORGANISATION
    if AuditEvent.__tablename__ in tables and connection.scalar(select(AuditEvent.seq).limit(1)) is not None:
        return Holding.DATA
    return Holding.EMPTY_SCHEMA


def sqlite_file_missing(sqlalchemy_url: str) -> bool:
    """Whether the URL names a SQLite file that does not exist (connecting would create it)."""
    url = _url(sqlalchemy_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    return not Path(url.database).expanduser().exists()


def no_organisation(settings: Settings) -> str:
    return (
        f"no Daylight organisation in this database ({shown_database(settings.sqlalchemy_url)}); "
        f"run `daylight init --data-dir {settings.data_dir}` first, or point --env-file at the "
        f"right settings (the service's: {SERVICE_ENV_FILE})"
    )


def unreachable(settings: Settings, exc: SQLAlchemyError) -> str:
    """The driver's own first line (it names the host and the cause, never the password)."""
    reason = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()
    return (
        f"cannot reach the database {shown_database(settings.sqlalchemy_url)}: "
        f"{reason[0] if reason else type(exc).__name__}"
    )


def require_organisation(settings: Settings, database: Database) -> None:
    """Refuses, before any command reads a table, a database without an organisation (a
    command must not create an empty SQLite file, nor fail with 'no such table')."""
    if sqlite_file_missing(settings.sqlalchemy_url):
        raise DeploymentRefused(no_organisation(settings))
    try:
        with database.engine.connect() as connection:
            # A deferred BEGIN on SQLite: looking takes no write lock.
            holding = what_the_database_holds(connection.execution_options(**{READ_ONLY_OPTION: True}))
    except SQLAlchemyError as exc:
        raise DeploymentRefused(unreachable(settings, exc)) from None
    if holding is not Holding.ORGANISATION:
        raise DeploymentRefused(no_organisation(settings))
