"""Creating an organisation: data dir, server secrets, schema, intake key, deployment identity.

All or nothing. Everything in the database (the migrations, the intake key, the row-MAC
backfill, and `demo`'s accounts and tips) is one transaction on one connection: SQLite's and
PostgreSQL's DDL are both transactional, so a failure at any step leaves the database as it
was. Everything in the data dir that this run made (the data dir itself, `secrets/`, the env
file, the SQLite file, `blobs/`, the identity file, demo credentials) is removed when it fails,
and a file it overwrote (the data dir's env file) is put back: a second `init`, once the
cause is fixed, starts from where the first did.

A database left by an init from before this was all or nothing (migrated, with no intake key
and no audit event: an empty schema) is taken as it is: init carries on there. One that holds
audit events but no intake key is not a fresh database, and init refuses it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.crypto import sealing
from app.custody.models import IntakeKey
from app.custody.service import create_intake_key
from app.entrypoints.deployment import (
    Holding,
    identity_of,
    shown_database,
    sqlite_file_missing,
    what_the_database_holds,
    write_identity,
)
from app.entrypoints.integrity_backfill import backfill_row_macs
from app.kit.config import DATA_DIR_ENV_FILE, Environment, Settings
from app.kit.db import Database
from app.kit.server_secrets import create_server_secrets
from app.schema import sqlite_foreign_keys_off, upgrade_to_head


class OrganisationExists(Exception):
    """An organisation is already set up here; init never overwrites one. The message says where."""


@dataclass(frozen=True, slots=True, repr=False)
class NewOrganisation:
    intake_key: IntakeKey
    intake_private: sealing.PrivateKey
    recovery_key: str


def init_organisation(
    settings: Settings, database: Database, *, environment: Environment = Environment.PRODUCTION
) -> NewOrganisation:
    with organisation_created(settings, database, environment=environment) as (organisation, _):
        return organisation


@contextlib.contextmanager
def organisation_created(
    settings: Settings, database: Database, *, environment: Environment = Environment.PRODUCTION
) -> Iterator[tuple[NewOrganisation, Database]]:
    """A new organisation, and a Database whose transactions are part of the one that creates it:
    what the block adds with it (demo's accounts and tips) commits with the organisation, or,
    when the block raises, is undone with it."""
    made = _WhatThisRunMakes.before(settings, database)
    try:
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if settings.secrets_dir.exists():
            raise OrganisationExists(_secrets_exist(settings, database))
        with (
            database.engine.connect() as connection,
            sqlite_foreign_keys_off(connection),
            connection.begin(),
        ):
            _refuse_a_database_in_use(settings, connection)
            env_file = settings.data_dir / DATA_DIR_ENV_FILE
            env_file.write_text(
                f"# Written by daylight init; environment variables override it.\n"
                f"DAYLIGHT_ENVIRONMENT={environment.value}\n"
            )
            server_secrets = create_server_secrets(settings.secrets_dir)
            upgrade_to_head(connection)
            inside = _joined(database, connection)
            with inside.transaction() as session:
                intake_key, intake_private, recovery_key = create_intake_key(
                    session, key_integrity_key=server_secrets.key_integrity_key
                )
            # A new organisation has no message from before row MACs: close that door at once.
            backfill_row_macs(inside, server_secrets.key_integrity_key)
            yield (
                NewOrganisation(
                    intake_key=intake_key, intake_private=intake_private, recovery_key=recovery_key
                ),
                inside,
            )
            write_identity(settings.data_dir, identity_of(settings))
            if connection.dialect.name == "sqlite":
                # Foreign keys were off for the migrations (app.schema): checked before the commit.
                dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if dangling:
                    raise RuntimeError(f"init left {len(dangling)} rows referencing missing rows")
    except BaseException:
        # Pooled SQLite handles closed first: the file they hold is about to be removed.
        database.engine.dispose()
        made.undo()
        raise


def _secrets_exist(settings: Settings, database: Database) -> str:
    """Why init refuses a data dir that has secrets: an organisation, or what an init from
    before this was all or nothing left behind when it failed."""
    refusal = f"an organisation already exists in {settings.data_dir} (it has {settings.secrets_dir.name}/)"
    if sqlite_file_missing(settings.sqlalchemy_url):
        holding = Holding.NOTHING
    else:
        try:
            with database.engine.connect() as connection:
                holding = what_the_database_holds(connection)
        except SQLAlchemyError:
            return refusal
    if holding in (Holding.ORGANISATION, Holding.DATA):
        return refusal
    return (
        f"{refusal}, but the database {shown_database(settings.sqlalchemy_url)} holds none. Either "
        "these are not the deployment's settings (pass --env-file with the service's settings), "
        "or an earlier init failed part-way: then empty the data dir (its secrets/ were never "
        "used) and run init again."
    )


def _refuse_a_database_in_use(settings: Settings, connection: Connection) -> None:
    holding = what_the_database_holds(connection)
    where = shown_database(settings.sqlalchemy_url)
    if holding is Holding.ORGANISATION:
        raise OrganisationExists(f"an organisation already exists in the database {where}")
    if holding is Holding.DATA:
        raise OrganisationExists(
            f"the database {where} holds audit events but no intake key: not a new database; "
            "init writes only into an empty one"
        )


def _joined(database: Database, connection: Connection) -> Database:
    """``database``, with every transaction a savepoint of the one open on ``connection``."""
    return Database(
        engine=database.engine,
        session_factory=lambda: Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        ),
    )


@dataclass
class _WhatThisRunMakes:
    """What existed before init ran, so that a failed init removes exactly what it made."""

    data_dir: Path
    # The highest directory of the data dir's path that did not exist (mkdir makes parents).
    new_directory: Path | None
    entries: set[str] = field(default_factory=set)
    # The data dir's env file, when one was there: init rewrites it.
    env_file: bytes | None = None
    # A SQLite file outside the data dir (DAYLIGHT_DATABASE_URL) that did not exist.
    new_sqlite_file: Path | None = None

    @classmethod
    def before(cls, settings: Settings, database: Database) -> _WhatThisRunMakes:
        data_dir = settings.data_dir
        new_directory = None
        ancestor = data_dir
        while not ancestor.exists() and ancestor != ancestor.parent:
            new_directory, ancestor = ancestor, ancestor.parent
        made = cls(data_dir=data_dir, new_directory=new_directory)
        if new_directory is None:
            made.entries = {path.name for path in data_dir.iterdir()}
            env_file = data_dir / DATA_DIR_ENV_FILE
            if env_file.is_file():
                made.env_file = env_file.read_bytes()
        url = make_url(settings.sqlalchemy_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            path = Path(url.database).expanduser().resolve()
            if not path.exists() and not path.is_relative_to(data_dir.resolve()):
                made.new_sqlite_file = path
        return made

    def undo(self) -> None:
        """Best effort, never raising: the caller re-raises the failure that matters."""
        if self.new_directory is not None:
            shutil.rmtree(self.new_directory, ignore_errors=True)
        elif self.data_dir.is_dir():
            for path in self.data_dir.iterdir():
                if path.name not in self.entries:
                    _remove(path)
            if self.env_file is not None:
                with contextlib.suppress(OSError):
                    (self.data_dir / DATA_DIR_ENV_FILE).write_bytes(self.env_file)
        if self.new_sqlite_file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                _remove(self.new_sqlite_file.with_name(self.new_sqlite_file.name + suffix))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
