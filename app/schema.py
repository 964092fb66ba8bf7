"""The schema is built only by Alembic migrations, never by ``create_all``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

# Inside the package, so that an installed wheel carries them (pyproject.toml, package-data):
# the app and `daylight init` migrate from here, and so does the developers' alembic.ini.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(bind: Engine | Connection) -> None:
    migrate(bind, "head")


def migrate(bind: Engine | Connection, revision: str, *, downgrade: bool = False) -> None:
    """Run the migrations up (or down) to ``revision``, in one transaction."""
    if isinstance(bind, Connection):
        _run(bind, revision, downgrade=downgrade)
        return
    with bind.connect() as connection, sqlite_foreign_keys_off(connection), connection.begin():
        _run(connection, revision, downgrade=downgrade)


def _run(connection: Connection, revision: str, *, downgrade: bool) -> None:
    config = alembic_config(connection)
    if downgrade:
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)
    if connection.dialect.name == "sqlite":
        # Checked before the commit: a migration that left a dangling reference is rolled back.
        dangling = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if dangling:
            raise RuntimeError(f"the migration left {len(dangling)} rows referencing missing rows")


@contextlib.contextmanager
def sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """Foreign key enforcement off on SQLite for the length of a migration.

    SQLite's batch mode changes a table by building a new one, copying the rows and
    dropping the old one. With enforcement on, that DROP cascades: rebuilding ``tips``
    would delete every message, file, tag, note and case membership of every tip. The
    pragma is a no-op inside a transaction, so it is set on the raw connection before
    the migration's transaction begins, and set back after, since the connection
    returns to the pool (`_run` checks the references before committing).
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None  # noqa: S101 - an open pysqlite connection
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def migration_heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())
