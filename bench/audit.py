"""Time the audit log's three costs, side by side in one run, against their targets.

    make bench        (or: .venv/bin/python bench/audit.py [--events N] [--rounds N] [--proofs N])

* append: a transaction that calls ``events.record`` versus the same transaction inserting a plain row
  into a plain throwaway table (a primary key, no index, no sequence to compute): both are write
  transactions that commit a row, so the difference is what the audit log itself adds. Alternated so
  that machine noise hits both series alike; on SQLite and, when reachable, on PostgreSQL
  (a throwaway schema on postgresql+psycopg://postgres@127.0.0.1:5432/test, or DAYLIGHT_TEST_POSTGRES_URL);
* verification: a million events bulk-inserted into a fresh SQLite file, one ``write_checkpoint`` over
  all of them, then ``verify_database``;
* inclusion proofs: ``merkle.inclusion_proof`` over ``DatabaseNodeStore`` at random indices, each with a
  fresh store and an emptied session, so no cache helps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from app.audit_log import events, service
from app.audit_log.checkpoint import open_signed_checkpoint, signing_key_from_seed
from app.audit_log.merkle import inclusion_proof, leaf_hash, verify_inclusion
from app.audit_log.models import AuditEvent
from app.audit_log.verification import verify_database
from app.kit.config import Settings
from app.kit.db import Database, create_database_engine
from app.schema import upgrade_to_head

ORIGIN = "daylight.bench/audit"
SIGNING_KEY = signing_key_from_seed(bytes(32))
PUBLIC_KEY = SIGNING_KEY.public_key()
ACTOR = events.Actor(id=uuid.UUID(int=0x5EED, version=4), username="bench-lead", role="lead")
POSTGRES_URL = os.environ.get(
    "DAYLIGHT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
INSERT_CHUNK = 50_000
# The append floor's table: what any write transaction of one row costs, without the audit log's
# gapless sequence number. Created next to the audit tables, dropped after the series.
CREATE_PLAIN_TABLE = text(
    "CREATE TABLE bench_plain_rows (id VARCHAR(36) PRIMARY KEY, action VARCHAR(64) "
    "NOT NULL, object_id VARCHAR(64), details TEXT NOT NULL)"
)
INSERT_PLAIN_ROW = text(
    "INSERT INTO bench_plain_rows (id, action, object_id, details) "
    "VALUES (:id, :action, :object_id, :details)"
)
DROP_PLAIN_TABLE = text("DROP TABLE bench_plain_rows")
ACTIONS = ("tip.view", "tip.triage", "auth.login", "tip.export", "key.grant")


@dataclass
class Row:
    name: str
    n: int | None
    median_ms: float
    p90_ms: float | None = None
    target: str = ""


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# --- Append cost -------------------------------------------------------------------------------------


def append_rows(label: str, database: Database, rounds: int) -> list[Row]:
    """Median of whole write transactions (begin, one insert, commit) and of the inserts alone."""
    txn = {"baseline": [], "record": []}
    call = {"baseline": [], "record": []}
    with database.transaction() as session:
        session.execute(CREATE_PLAIN_TABLE)

    def baseline() -> None:
        with database.transaction() as session:
            call["baseline"].append(
                timed(
                    lambda: session.execute(
                        INSERT_PLAIN_ROW,
                        {
                            "id": str(uuid.uuid4()),
                            "action": "bench.append",
                            "object_id": str(uuid.uuid4()),
                            "details": json.dumps({"n": len(call["baseline"])}),
                        },
                    )
                )
            )

    def record() -> None:
        with database.transaction() as session:
            call["record"].append(
                timed(
                    lambda: events.record(
                        session,
                        ACTOR,
                        "bench.append",
                        object_type="tip",
                        object_id=uuid.uuid4(),
                        details={"n": len(call["record"])},
                    )
                )
            )

    for _ in range(10):  # warm the pool, the statement caches and the file
        baseline()
        record()
    for series in (*txn.values(), *call.values()):
        series.clear()
    for _ in range(rounds):
        txn["baseline"].append(timed(baseline))
        txn["record"].append(timed(record))
    with database.transaction() as session:
        session.execute(DROP_PLAIN_TABLE)
    base, rec = statistics.median(txn["baseline"]), statistics.median(txn["record"])
    call_base, call_rec = statistics.median(call["baseline"]), statistics.median(call["record"])
    return [
        Row(f"{label}: txn with a plain insert (baseline)", rounds, base * 1e3, p90(txn["baseline"]) * 1e3),
        Row(f"{label}: txn with events.record()", rounds, rec * 1e3, p90(txn["record"]) * 1e3),
        Row(f"{label}: append = record txn − baseline", None, (rec - base) * 1e3, None, "< 1 ms"),
        Row(
            f"{label}: record() call − plain insert call", None, (call_rec - call_base) * 1e3, None, "< 1 ms"
        ),
    ]


def sqlite_append(rounds: int) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        database = Database.from_settings(Settings(data_dir=Path(tmp)))
        try:
            upgrade_to_head(database.engine)
            return append_rows("sqlite", database, rounds)
        finally:
            database.engine.dispose()


def postgres_reachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    probe = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with probe.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect means: skip PostgreSQL
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        probe.dispose()
    return None


def postgres_append(rounds: int) -> list[Row]:
    admin = create_database_engine(POSTGRES_URL)
    schema = f"daylight_bench_{secrets.token_hex(4)}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    engine = create_database_engine(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    try:
        upgrade_to_head(engine)
        database = Database(engine, sessionmaker(engine, expire_on_commit=False))
        return append_rows("postgresql", database, rounds)
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


# --- A million events --------------------------------------------------------------------------------


def event_rows(engine: Engine, count: int) -> Iterator[tuple[object, ...]]:
    """Rows in the column formats SQLAlchemy itself stores on this dialect (as the ORM would write them)."""
    dialect = engine.dialect
    table = AuditEvent.__table__

    def bind(column: str) -> Callable[[object], object]:
        processor = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
        return processor if processor is not None else (lambda value: value)

    as_time, as_uuid = bind("occurred_at"), bind("actor_id")
    actors = [as_uuid(uuid.UUID(int=number + 1, version=4)) for number in range(50)]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for seq in range(1, count + 1):
        system = seq % 10 == 0
        yield (
            seq,
            as_time(start + dt.timedelta(milliseconds=250 * seq + seq % 1000)),
            None if system else actors[seq % 50],
            None if system else f"staff-{seq % 50}",
            "system" if system else "caseworker",
            ACTIONS[seq % len(ACTIONS)],
            "tip",
            f"tip-{seq % 9973}",
            "success",
            "{}",
        )


def bulk_insert(engine: Engine, count: int) -> None:
    columns = [column.name for column in AuditEvent.__table__.columns]
    statement = (
        f"INSERT INTO audit_events ({', '.join(columns)}) "  # noqa: S608 - column names, no input
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    rows = event_rows(engine, count)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("BEGIN")
        while chunk := [row for _, row in zip(range(INSERT_CHUNK), rows, strict=False)]:
            cursor.executemany(statement, chunk)
        cursor.execute("COMMIT")
        cursor.close()
    finally:
        raw.close()


def million_rows(count: int, proofs: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        database = Database.from_settings(Settings(data_dir=Path(tmp)))
        engine = database.engine
        try:
            upgrade_to_head(engine)
            progress(f"bulk-inserting {count:,} events")
            insert_seconds = timed(lambda: bulk_insert(engine, count))
            rows.append(Row(f"bulk insert {count:,} events (setup)", 1, insert_seconds * 1e3))

            progress("write_checkpoint over all of them")
            start = time.perf_counter()
            with database.transaction() as session:
                checkpoint = service.write_checkpoint(session, SIGNING_KEY, ORIGIN)
            checkpoint_seconds = time.perf_counter() - start
            assert checkpoint is not None
            assert checkpoint.tree_size == count
            rows.append(Row(f"write_checkpoint, {count:,} new events", 1, checkpoint_seconds * 1e3))

            progress("verify_database")
            with engine.connect() as connection:
                start = time.perf_counter()
                report = verify_database(connection, PUBLIC_KEY, ORIGIN)
                verify_seconds = time.perf_counter() - start
            assert report.ok, report.problems
            assert report.size == count
            assert report.checkpoints_checked == 1
            rows.append(
                Row(
                    f"verify_database, {count:,} events",
                    1,
                    verify_seconds * 1e3,
                    None,
                    f"< 10 s  ({count / verify_seconds:,.0f} events/s)",
                )
            )

            progress(f"{proofs} inclusion proofs")
            root = open_signed_checkpoint(checkpoint.signed_note, PUBLIC_KEY, origin=ORIGIN).root_hash
            rows.append(proof_row(database, count, root, proofs))
        finally:
            engine.dispose()
    return rows


def proof_row(database: Database, size: int, root: bytes, proofs: int) -> Row:
    rng = random.Random(9162)  # noqa: S311 - benchmark indices, not secrets
    durations: list[float] = []
    with database.transaction() as session:
        for index in [rng.randrange(size) for _ in range(proofs)]:
            session.expunge_all()  # the identity map would otherwise cache nodes across proofs
            start = time.perf_counter()
            proof = inclusion_proof(service.DatabaseNodeStore(session), index, size)
            durations.append(time.perf_counter() - start)
            assert verify_inclusion(stored_leaf(session, index), index, size, proof, root)
    return Row(
        f"inclusion_proof at {size:,}, DatabaseNodeStore",
        proofs,
        statistics.median(durations) * 1e3,
        p90(durations) * 1e3,
        "< 10 ms",
    )


def stored_leaf(session: Session, index: int) -> bytes:
    event = session.get_one(AuditEvent, index + 1)
    return leaf_hash(events.entry_of(event))


def duration(ms: float) -> str:
    return f"{ms / 1000:.2f} s" if abs(ms) >= 1000 else f"{ms:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200, help="append transactions per series")
    parser.add_argument("--proofs", type=int, default=200)
    args = parser.parse_args()
    rows: list[Row] = []
    notes: list[str] = []
    progress("append on SQLite")
    rows += sqlite_append(args.rounds)
    unreachable = postgres_reachable()
    if unreachable is None:
        progress("append on PostgreSQL")
        rows += postgres_append(args.rounds)
    else:
        notes.append(f"PostgreSQL skipped: {POSTGRES_URL} is unreachable ({unreachable})")
    rows += million_rows(args.events, args.proofs)

    print(f"{'audit path':<46} {'n':>4} {'median':>10} {'p90':>10}  target")
    for row in rows:
        n = "" if row.n is None else str(row.n)
        p90_text = "" if row.p90_ms is None else duration(row.p90_ms)
        print(f"{row.name:<46} {n:>4} {duration(row.median_ms):>10} {p90_text:>10}  {row.target}".rstrip())
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
