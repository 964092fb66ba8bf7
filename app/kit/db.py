"""Engine and session factories, the declarative base, and the request transaction.

The request owns the transaction: `request_session` commits once the handler
has returned and before the response is sent, and rolls back on any error.
Services only ``flush()``. A client that saw a 2xx knows its data committed;
one that saw an error knows nothing was written.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, make_url
from sqlalchemy import Enum as SAEnum
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, NullPool

from app.kit.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


SQLITE_BUSY_TIMEOUT_MS = 5000
# A serving process's statements may run this many times database_timeout_seconds.
SERVING_STATEMENT_FACTOR = 12


def _configure_sqlite(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT;
    # SQLAlchemy emits BEGIN itself instead (see _begin_sqlite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # Crypto-shredding deletes wrapped data keys; without secure_delete SQLite
    # leaves the deleted bytes in free pages, where a seized file still has them.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


logger = logging.getLogger(__name__)

READ_ONLY_OPTION = "daylight_read_only"


class _SerialisedSQLiteConnection(sqlite3.Connection):
    """A pysqlite connection that gives its engine's writer lock back when its transaction ends.

    SQLite admits one writer at a time. Left to itself, a writer that finds the lock
    taken polls for it with growing sleeps (busy_timeout), so under load most of the
    time goes to sleeping. Writers of one process instead queue on a lock in memory
    and are woken the moment the previous transaction has committed; SQLite's own
    lock still serialises them against other processes.
    """

    writer_lock: threading.Lock | None = None
    holds_writer_lock = False

    def _release_writer_lock(self) -> None:
        if self.holds_writer_lock and self.writer_lock is not None:
            self.holds_writer_lock = False
            self.writer_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release_writer_lock()


def _begin_sqlite(connection: Connection) -> None:
    # IMMEDIATE takes the write lock up front. A deferred BEGIN that reads,
    # then writes after another connection committed, fails at once with
    # "database is locked" (busy_timeout cannot help it); IMMEDIATE waits
    # its turn instead. SQLite serialises writers either way: requests are
    # short, and nothing holds a transaction open across a slow client
    # (app.web.admission reads small bodies whole first; uploads open their
    # transaction after the last byte).
    # A long read-only pass (audit verification) asks for a deferred BEGIN
    # instead, so that it does not hold the write lock (READ_ONLY_OPTION).
    read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
    if read_only:
        connection.exec_driver_sql("BEGIN")
        return
    dbapi_connection = connection.connection.dbapi_connection
    serialised = dbapi_connection if isinstance(dbapi_connection, _SerialisedSQLiteConnection) else None
    writer_lock = serialised.writer_lock if serialised and not serialised.holds_writer_lock else None
    # Bounded like busy_timeout; past it, SQLite's own wait decides (and may say "locked": a 503).
    if serialised and writer_lock and writer_lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        serialised.holds_writer_lock = True
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if serialised:
            serialised._release_writer_lock()
        raise


def _url_options(url: str) -> tuple[str, ...]:
    options = make_url(url).query.get("options")
    if options is None:
        return ()
    return (options,) if isinstance(options, str) else tuple(options)


def create_database_engine(
    url: str, *, pool_size: int | None = None, timeout_seconds: float | None = None
) -> Engine:
    """An engine; ``pool_size`` (connections kept) and ``timeout_seconds`` (the longest a
    statement waits for a pooled connection, or a new PostgreSQL connection for the server)
    for the serving processes, whose admission control is sized to the pool."""
    options: dict[str, Any] = {}
    connect_args: dict[str, Any] = {}
    sqlite = url.startswith("sqlite")
    if pool_size is not None:
        options.update(pool_size=pool_size, max_overflow=2)
    if timeout_seconds is not None:
        options["pool_timeout"] = timeout_seconds
        if not sqlite:
            # A serving process must answer (503) rather than wait without end: for a server
            # that stopped answering (TCP keepalives), for a lock held by maintenance
            # (lock_timeout), for a runaway statement (statement_timeout, generous: an auditor's
            # verification of a long log is a legitimate long read).
            connect_args.update(
                connect_timeout=max(1, round(timeout_seconds)),
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
                options=" ".join(
                    (
                        *_url_options(url),  # kept: e.g. a search_path set in the URL
                        f"-c lock_timeout={round(timeout_seconds * 1000)}",
                        f"-c statement_timeout={round(timeout_seconds * 1000 * SERVING_STATEMENT_FACTOR)}",
                    )
                ),
            )
    if sqlite:
        connect_args["factory"] = _SerialisedSQLiteConnection
    # hide_parameters: a failing statement's error message would otherwise
    # carry its bound values (usernames, row ids, dates) into the logs.
    # pre_ping finds connections a PostgreSQL restart has closed; a SQLite file has no server
    # to lose, and the ping would cost a statement per transaction.
    engine = create_engine(
        url, pool_pre_ping=not sqlite, hide_parameters=True, connect_args=connect_args, **options
    )
    if engine.dialect.name == "sqlite":
        writer_lock = threading.Lock()

        def configure(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            if isinstance(dbapi_connection, _SerialisedSQLiteConnection):
                dbapi_connection.writer_lock = writer_lock
            _configure_sqlite(dbapi_connection, record)

        event.listen(engine, "connect", configure)
        event.listen(engine, "begin", _begin_sqlite)
    return engine


@dataclass
class Database:
    """What the apps need of the database: a session factory, plus post-rollback cleanups."""

    engine: Engine
    session_factory: Callable[[], Session] = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, pool_size: int | None = None) -> Database:
        """``pool_size`` for a serving process (see app.web.admission); None for commands."""
        engine = create_database_engine(
            settings.sqlalchemy_url,
            pool_size=pool_size,
            timeout_seconds=settings.database_timeout_seconds if pool_size is not None else None,
        )
        return cls(engine=engine, session_factory=sessionmaker(engine, expire_on_commit=False))

    def answers(self) -> bool:
        """Whether the database answers a trivial query now, on a connection of its own (never
        one of the pool's, which may all be busy): the readiness check."""
        probe = create_engine(
            self.engine.url, poolclass=NullPool, hide_parameters=True, connect_args=self._probe_connect_args()
        )
        try:
            with probe.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False
        finally:
            probe.dispose()

    def _probe_connect_args(self) -> dict[str, Any]:
        if self.engine.dialect.name == "sqlite":
            return {"timeout": 1.0}
        return {"connect_timeout": 2}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commit on success, roll back (and run cleanups) on any error.
        Work registered with after_commit runs once the commit has succeeded."""
        session = self.session_factory()
        try:
            yield session
        except BaseException:
            undo(session)
            raise
        commit(session)


def commit(session: Session) -> None:
    """Commit and close ``session``, then run its after_commit hooks; on a failed commit, roll
    back and run its rollback cleanups instead, and raise."""
    try:
        session.commit()
    except BaseException:
        session.rollback()
        run_rollback_cleanups(session)
        raise
    finally:
        session.close()
    run_commit_hooks(session)


def undo(session: Session) -> None:
    """Roll back and close ``session`` and run its rollback cleanups (blobs written for it)."""
    try:
        session.rollback()
        run_rollback_cleanups(session)
    finally:
        session.close()


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
            logger.warning(
                "a %s hook failed; its file may remain on disk (ciphertext only)", what, exc_info=False
            )


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
    return SAEnum(
        enum_class,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )
