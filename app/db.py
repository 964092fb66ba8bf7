"""Engine and session factories, the declarative base, and the request transaction.

The request owns the transaction: `request_session` commits once the handler
has returned and before the response is sent, and rolls back on any error.
Services only ``flush()``. A client that saw a 2xx knows its data committed;
one that saw an error knows nothing was written.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from app.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _configure_sqlite(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT;
    # SQLAlchemy emits BEGIN itself instead (see _begin_sqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Crypto-shredding deletes wrapped data keys; without secure_delete SQLite
    # leaves the deleted bytes in free pages, where a seized file still has them.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


logger = logging.getLogger(__name__)

READ_ONLY_OPTION = "daylight_read_only"


def _begin_sqlite(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front. A deferred BEGIN that reads,
    # then writes after another connection committed, fails at once with
    # "database is locked" (busy_timeout cannot help it); IMMEDIATE waits
    # its turn instead. SQLite serialises writers either way: requests are
    # short, and nothing holds a transaction open across a slow client.
    # A long read-only pass (audit verification) asks for a deferred BEGIN
    # instead, so that it does not hold the write lock (READ_ONLY_OPTION).
    read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_database_engine(url: str) -> Engine:
    # hide_parameters: a failing statement's error message would otherwise
    # carry its bound values (usernames, row ids, dates) into the logs.
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        event.listen(engine, "begin", _begin_sqlite)
    return engine


@dataclass
class Database:
    """What the apps need of the database: a session factory, plus post-rollback cleanups."""

    engine: Engine
    session_factory: Callable[[], Session] = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_database_engine(settings.sqlalchemy_url)
        return cls(engine=engine, session_factory=sessionmaker(engine, expire_on_commit=False))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back (and run cleanups) on any error.
        Work registered with after_commit runs once the commit has succeeded."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            run_rollback_cleanups(session)
            raise
        finally:
            session.close()
        run_commit_hooks(session)


def on_rollback(session: Session, cleanup: Callable[[], None]) -> None:
    """Register work that undoes a side effect outside the database (a blob written to disk).

    Runs only when the transaction is rolled back, so no orphan file outlives
    a failed request.
    """
    session.info.setdefault("rollback_cleanups", []).append(cleanup)


def _run_each(hooks: list[Callable[[], None]], what: str) -> None:
    """Every hook runs even when one fails: one blob that cannot be unlinked must not leave the
    others behind, nor turn a committed deletion into an error page. Logged without ids."""
    for hook in hooks:
        try:
            hook()
        except Exception:
            logger.warning("a %s hook failed; its file may remain on disk (ciphertext only)", what,
                           exc_info=False)


def run_rollback_cleanups(session: Session) -> None:
    session.info.pop("commit_hooks", None)
    _run_each(list(reversed(session.info.pop("rollback_cleanups", []))), "rollback cleanup")


def after_commit(session: Session, hook: Callable[[], None]) -> None:
    """Register work outside the database that may only happen once the transaction has
    committed (unlinking a deleted tip's files: a rollback must find them still there)."""
    session.info.setdefault("commit_hooks", []).append(hook)


def run_commit_hooks(session: Session) -> None:
    session.info.pop("rollback_cleanups", None)
    _run_each(session.info.pop("commit_hooks", []), "post-commit")


def enum_column_type(enum_class: type[StrEnum], name: str) -> SAEnum:
    """A portable enum column: VARCHAR plus a CHECK constraint listing the values."""
    return SAEnum(enum_class, name=name, native_enum=False, create_constraint=True, length=32,
                  values_callable=lambda members: [member.value for member in members])
