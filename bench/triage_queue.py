"""Time the staff queue over 100,000 tips in PostgreSQL: the first page and filtered pages.

    make bench        (or: .venv/bin/python bench/triage_queue.py [--tips N] [--rounds N])

Tips are bulk-inserted into a throwaway schema on postgresql+psycopg://postgres@127.0.0.1:5432/test
(or DAYLIGHT_TEST_POSTGRES_URL) with realistic spreads: 5 % urgent, statuses mostly closed, three years
of days, a third indexed with blind-index tags, a few hundred assigned to the caseworker. Content columns
hold random bytes: the queue never decrypts. Each figure is the median of ``--rounds`` calls of
``triage.service.list_queue`` (the route's whole work, audit event included), in one transaction per
call, side by side with a ``SELECT 1`` transaction as the floor; the target is 100 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from app.auth.models import Role, StaffAccount
from app.auth.service import Principal, UnlockedKeys
from app.crypto import sealing
from app.db import Database, create_database_engine
from app.intake.models import TipStatus
from app.keys.service import create_intake_key
from app.schema import upgrade_to_head
from app.triage import service, tags
from app.triage.schemas import QueueFilters

POSTGRES_URL = os.environ.get("DAYLIGHT_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STATUS_WEIGHTS = {TipStatus.NEW: 8, TipStatus.IN_REVIEW: 6, TipStatus.NEEDS_INFO: 3, TipStatus.VERIFIED: 33,
                  TipStatus.REJECTED: 50}
TACTICS = ["family_pressure", "persuade_to_return", "station_contact", "surveillance", "digital_threats"]
CHUNK = 10_000


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


def populate(database: Database, count: int, caseworker_id: uuid.UUID,
             intake_private: sealing.PrivateKey) -> None:
    rng = random.Random(100_000)  # noqa: S311 - benchmark data, not secrets
    key = tags.filter_key(intake_private, 1)
    start = dt.date(2023, 1, 1)
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        for offset in range(0, count, CHUNK):
            tips, tip_tags = [], []
            for _ in range(min(CHUNK, count - offset)):
                tip_id = uuid.uuid4()
                received = start + dt.timedelta(days=rng.randrange(3 * 365))
                status = rng.choices(statuses, weights)[0]
                indexed = rng.random() < 0.33
                assignee = caseworker_id if status in (TipStatus.IN_REVIEW, TipStatus.NEEDS_INFO) and \
                    rng.random() < 0.3 else None
                tips.append((tip_id, "T-" + tip_id.hex[:12].upper(), status.value, rng.random() < 0.05,
                             received, received, 1, 1, os.urandom(64), os.urandom(64), os.urandom(64),
                             os.urandom(32), os.urandom(32), os.urandom(32), assignee, indexed))
                if indexed:
                    for tactic in rng.sample(TACTICS, 2):
                        tip_tags.append((tip_id, tags.tag(key, "tactic", tactic)))
                    tip_tags.append((tip_id, tags.tag(key, "country", rng.choice(["IE", "NL", "DE", "US"]))))
            cursor.executemany(
                "INSERT INTO tips (id, ref, status, urgent, received_on, last_activity_on, "
                "intake_key_version, content_key_version, "
                "sealed_data_key, narrative_encrypted, answers_encrypted, receipt_lookup_hash, "
                "receipt_public_key, receipt_public_key_mac, assignee_id, indexed, submitter_activity) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, false)", tips)
            cursor.executemany("INSERT INTO tip_tags (tip_id, tag) VALUES (%s, %s)", tip_tags)
            raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def timed_ms(database: Database, call: Callable[..., object], rounds: int) -> tuple[float, float]:
    durations = []
    for _ in range(rounds + 3):
        with database.transaction() as session:
            start = time.perf_counter()
            call(session)
            durations.append((time.perf_counter() - start) * 1e3)
    ordered = sorted(durations[3:])  # the first calls warm the caches
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tips", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    schema = f"daylight_bench_queue_{secrets.token_hex(4)}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # no PostgreSQL: say so, do not fail the other benchmarks
        print(f"queue benchmark skipped: {POSTGRES_URL} is unreachable ({type(exc).__name__})")
        return 0
    separator = "&" if "?" in POSTGRES_URL else "?"
    engine = create_database_engine(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    database = Database(engine, sessionmaker(engine, expire_on_commit=False))
    try:
        upgrade_to_head(engine)
        with database.transaction() as session:
            _, intake_private, _ = create_intake_key(session, key_integrity_key=os.urandom(32))
            caseworker_id = uuid.uuid4()
            session.add(StaffAccount(id=caseworker_id, username="bench-caseworker", role=Role.CASEWORKER,
                                     created_on=dt.date.today()))
        progress(f"inserting {args.tips:,} tips")
        populate(database, args.tips, caseworker_id, intake_private)
        principal = Principal(account_id=caseworker_id, username="bench-caseworker", role=Role.CASEWORKER,
                              session_id=uuid.uuid4(),
                              keys=UnlockedKeys(personal=sealing.generate_private_key(),
                                                intake={1: intake_private}),
                              reauthenticated_at=dt.datetime.now(dt.UTC), csrf_token="")
        first = service.list_queue
        cases: list[tuple[str, QueueFilters]] = [
            ("first page (50, urgent then oldest)", QueueFilters()),
            ("filtered: status=new", QueueFilters(status=TipStatus.NEW)),
            ("filtered: mine + needs_info", QueueFilters(mine=True, status=TipStatus.NEEDS_INFO)),
            ("filtered: tactic=surveillance (blind index)", QueueFilters(tactic="surveillance")),
            ("filtered: country=IE + urgent", QueueFilters(country="IE", urgent=True)),
        ]
        with database.transaction() as session:
            page = first(session, principal, QueueFilters())
        cases.append(("second page (keyset cursor)", QueueFilters(cursor=page.next_cursor)))
        floor = timed_ms(database, lambda session: session.execute(text("SELECT 1")).scalar_one(),
                         args.rounds)
        title = f"queue over {args.tips:,} tips (PostgreSQL)"
        print(f"{title:<48} {'median':>10} {'p90':>10}  target")
        print(f"{'transaction with SELECT 1 (floor)':<48} {floor[0]:>7.2f} ms {floor[1]:>7.2f} ms")
        for name, filters in cases:
            median, p90 = timed_ms(database, lambda session, f=filters: first(session, principal, f),
                                   args.rounds)
            print(f"{name:<48} {median:>7.2f} ms {p90:>7.2f} ms  < 100 ms")
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
