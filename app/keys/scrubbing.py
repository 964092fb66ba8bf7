"""After a rotation: no copy of the old key's wraps left in the database's free space or journal."""

from __future__ import annotations

import time

from sqlalchemy import text

from app.crypto.sealed_keys import tables_holding_sealed_keys
from app.kit.db import Database

CHECKPOINT_ATTEMPTS = 20

# The key custody tables a rotation deletes from, and the sessions it ends (they carry the old
# key unlocked); the registered tables that held data keys sealed to the old key follow.
_KEY_TABLES = ("intake_keys", "intake_key_grants", "intake_key_rotations", "staff_sessions")


def scrubbed_tables() -> tuple[str, ...]:
    """Every table VACUUM FULL rewrites on PostgreSQL after a rotation, in that order."""
    return _KEY_TABLES + tables_holding_sealed_keys()


def scrub_deleted_key_material(database: Database) -> list[str]:
    """Leave no copy of the old wraps in the database's free space or journal; returns what could
    not be done (empty when all was), for the operator to finish by hand.

    SQLite runs with secure_delete (freed pages are zeroed); what is left is the
    write-ahead log, truncated here once no reader holds it. PostgreSQL keeps
    updated and deleted rows as dead tuples until a vacuum, and a plain VACUUM
    only marks them reusable: VACUUM FULL rewrites the tables without them. It
    locks each table for as long as the rewrite takes, which is why `daylight
    keys rotate` is run in a quiet hour. Neither reaches WAL archives, replicas
    or backups: docs/deploy.md.
    """
    if database.engine.dialect.name == "sqlite":
        # Outside any transaction (the engine's connections begin one on first use).
        raw = database.engine.raw_connection()
        try:
            for _ in range(CHECKPOINT_ATTEMPTS):
                busy, _, _ = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return []
                time.sleep(0.25)  # a reader (an app node) holds the log; it lets go between requests
        finally:
            raw.close()
        return [
            "the SQLite write-ahead log is still in use: run PRAGMA wal_checkpoint(TRUNCATE) once "
            "the service is stopped"
        ]
    problems = []
    with database.engine.connect() as connection:
        autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
        for table in scrubbed_tables():
            try:
                # Table names declared in code (here and by the models' registrations), never input.
                autocommit.execute(text(f"VACUUM FULL {table}"))
            except Exception as exc:  # one table's failure must not skip the others
                problems.append(f"VACUUM FULL {table} failed ({type(exc).__name__}): run it again by hand")
    return problems
