"""What every `daylight` command shares: its argument types, and one way to open a data dir."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TextIO, TypeAlias

from sqlalchemy import inspect

from app.audit_log.signer import SignerRun, coverage, local_signer
from app.entrypoints.apps import held_secret_names
from app.entrypoints.deployment import (
    check_identity,
    identity_for,
    identity_of,
    record_identity_if_missing,
    require_organisation,
    shown_database,
    sqlite_file_missing,
)
from app.kit.config import Environment, Settings, load_settings, where_settings_point
from app.kit.db import Database
from app.kit.server_secrets import SECRET_NAMES, ServerSecrets, load_server_secrets

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# The type functions keep their leading underscore: argparse names them in its error message
# ("invalid _positive_int value: 'x'"), and that message is CLI output.
def _data_dir(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def add_command(commands: Commands, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command that works on one data dir, named by the required --data-dir."""
    command = commands.add_parser(name, help=help_text)
    command.add_argument("--data-dir", type=_data_dir, required=True)
    return command


def add_group(commands: Commands, name: str, help_text: str) -> Commands:
    """A command group (`daylight keys …`); a missing subcommand is named as ``NAME_command``."""
    return commands.add_parser(name, help=help_text).add_subparsers(dest=f"{name}_command", required=True)


@dataclass(frozen=True)
class Deployment:
    """A data dir as a command sees it: its settings, its database and its server secrets."""

    settings: Settings
    database: Database

    @cached_property
    def server_secrets(self) -> ServerSecrets:
        """Read on first use: `init` creates them, and commands that neither sign nor seal
        (purge, stations) never read them."""
        return load_server_secrets(self.settings.secrets_dir, held_secret_names(self.settings, SECRET_NAMES))


def settings_in_use(data_dir: Path) -> str:
    """The database the settings of ``data_dir`` name (without its password), once they are
    checked against the deployment `init` recorded there: refused (DeploymentRefused) when they
    point at another database or name the audit log otherwise. Every `daylight` command with a
    data dir runs this first (`main`), whether or not it goes through `open_deployment`."""
    sqlalchemy_url, origin = where_settings_point(data_dir)
    check_identity(data_dir, identity_for(data_dir, sqlalchemy_url, origin))
    return shown_database(sqlalchemy_url)


@contextlib.contextmanager
def open_deployment(
    data_dir: Path,
    *,
    sign_checkpoint: bool = True,
    environment: Environment | None = None,
    creating: bool = False,
) -> Iterator[Deployment]:
    """The data dir's settings and database. The engine is disposed however the command ends:
    its pooled connections close now, not at garbage collection, so in-process runs
    (`main` called again and again) do not pile up PostgreSQL connections or SQLite handles.

    Refused (DeploymentRefused, before any table is read) when the settings are not the ones
    `init` recorded in the data dir, or when the database holds no organisation: a command never
    creates an empty SQLite file, nor fails with 'no such table'. ``creating`` (init, demo)
    skips the second check: they make the organisation.

    A command that succeeds and appended audit events signs a checkpoint over them before it
    exits, so that no command leaves an unsigned tail behind (app.audit_log.signer). `audit
    verify` opts out: a verifier that signed what it found would bless an edited tail.

    ``environment`` overrides the data dir's: `demo` creates a development organisation, so
    it runs under development settings (cheap Argon2id is allowed there) from the start.
    """
    overrides = {} if environment is None else {"environment": environment}
    settings = load_settings(data_dir, **overrides)
    check_identity(data_dir, identity_of(settings))
    database = Database.from_settings(settings)
    try:
        if not creating:
            require_organisation(settings, database)
            record_identity_if_missing(settings)
        deployment = Deployment(settings, database)
        yield deployment
        if sign_checkpoint:
            sign_what_the_command_recorded(deployment)
    finally:
        database.engine.dispose()


def sign_what_the_command_recorded(deployment: Deployment) -> None:
    """Done by `open_deployment` when the command ends; `init` and `demo`, which may fail and
    leave no database to sign in, call it themselves once they have succeeded."""
    if sqlite_file_missing(deployment.settings.sqlalchemy_url):
        return  # a refused or failed init: looking would create the file it removed
    if "audit_events" not in inspect(deployment.database.engine).get_table_names():
        return  # no organisation here (a refused or failed init)
    with deployment.database.transaction() as session:
        covered = coverage(session)
    if not covered.unsigned or deployment.settings.audit_verifier_key is not None:
        return  # nothing new, or the signer runs on a host of its own and will sign it
    signer = local_signer(deployment.settings, deployment.server_secrets)
    if signer is None:
        return
    run = SignerRun(signer, deployment.database)
    run.sign_now()
    if run.last_refusal is not None:
        print(f"daylight: AUDIT ALERT: checkpoint refused: {run.last_refusal}", file=sys.stderr)


@contextlib.contextmanager
def output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or the file named by --output."""
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as handle:
        yield handle
