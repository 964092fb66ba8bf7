"""Time the staff queue in PostgreSQL at 100,000 and 1,000,000 tips: first, filtered and deep pages.

    make bench        (or: .venv/bin/python bench/triage_queue.py [--tips N [N ...]] [--rounds N])

For each size, tips are loaded with COPY into a throwaway schema on
postgresql+psycopg://postgres@127.0.0.1:5432/test (or DAYLIGHT_TEST_POSTGRES_URL), through the
migrations' triggers, with realistic spreads: 5 % urgent, statuses mostly closed, three years of
days, a third indexed with blind-index tags (two tactics and a country each), a third of the open
tips assigned (about 300 to the caseworker who reads the queue, the rest to 40 others), one case
per thousand tips, a tenth of them restricted to a lead (their tips hidden from the caseworker).
Content columns hold random bytes: the pages are read as the API reads them, without
summaries (the staff page decrypts 50; bench/desk_search.py seeds real content and times
them). Each figure is the median of
``--rounds`` calls of ``triage.service.list_queue`` (the route's whole work: page, counts, audit
event), one transaction per call, beside a ``SELECT 1`` transaction as the floor. Target: every
row under 20 ms (issue 13). The load average is printed with each table: on a shared machine,
compare figures taken under the same load.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.auth.models import Role, StaffAccount
from app.auth.principal import Principal, UnlockedKeys
from app.cases.repository import tips_visible_to
from app.crypto import sealing
from app.custody.service import create_intake_key
from app.intake.models import Tip, TipStatus
from app.kit.db import Database, create_database_engine
from app.schema import upgrade_to_head
from app.triage import service, tags
from app.triage.repository import fold_queue_count_changes
from app.triage.schemas import QueueFilters

POSTGRES_URL = os.environ.get(
    "DAYLIGHT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
STATUS_WEIGHTS = {
    TipStatus.NEW: 8,
    TipStatus.IN_REVIEW: 6,
    TipStatus.NEEDS_INFO: 3,
    TipStatus.VERIFIED: 33,
    TipStatus.REJECTED: 50,
}
TACTICS = ["family_pressure", "persuade_to_return", "station_contact", "surveillance", "digital_threats"]
COUNTRIES = ["IE", "NL", "DE", "US"]
COPY_ROWS = 100_000  # per COPY statement: the statement-level triggers run once per statement
TARGET_MS = 20.0
DEEP_FRACTION = 0.9
CHANGES_BEFORE_READ = 50
ASSIGNED_TO_READER = 300
OTHER_CASEWORKERS = 40

TIP_COLUMNS = ", ".join(
    (
        "id",
        "ref",
        "status",
        "urgent",
        "received_on",
        "last_activity_on",
        "intake_key_version",
        "content_key_version",
        "sealed_data_key",
        "narrative_encrypted",
        "answers_encrypted",
        "receipt_lookup_hash",
        "receipt_public_key",
        "receipt_public_key_mac",
        "assignee_id",
        "indexed",
        "submitter_activity",
    )
)
CASE_COLUMNS = ", ".join(
    (
        "id",
        "ref",
        "status",
        "restricted",
        "created_on",
        "created_by_id",
        "intake_key_version",
        "content_key_version",
        "sealed_data_key",
        "title_encrypted",
        "summary_encrypted",
    )
)


def progress(message: str) -> None:
    print(f"  … {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Staff:
    caseworker: uuid.UUID
    lead: uuid.UUID
    # The other caseworkers, who hold most of the assigned tips.
    others: tuple[uuid.UUID, ...]


def generated_tips(
    count: int, staff: Staff, key: bytes, rng: random.Random
) -> Iterator[tuple[tuple[object, ...], list[bytes]]]:
    """(tips row, its tags) for ``count`` tips."""
    start = dt.date(2023, 1, 1)
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    # A third of the open tips are assigned; the caseworker reading the queue holds about
    # ASSIGNED_TO_READER of them, the other caseworkers the rest.
    open_share = (STATUS_WEIGHTS[TipStatus.IN_REVIEW] + STATUS_WEIGHTS[TipStatus.NEEDS_INFO]) / 100
    assigned_open = count * open_share * 0.3
    to_reader = min(1.0, ASSIGNED_TO_READER / max(assigned_open, 1))
    for _ in range(count):
        tip_id = uuid.uuid4()
        received = start + dt.timedelta(days=rng.randrange(3 * 365))
        status = rng.choices(statuses, weights)[0]
        indexed = rng.random() < 0.33
        assignee = None
        if status in (TipStatus.IN_REVIEW, TipStatus.NEEDS_INFO) and rng.random() < 0.3:
            assignee = staff.caseworker if rng.random() < to_reader else rng.choice(staff.others)
        row = (
            tip_id,
            "T-" + tip_id.hex[:12].upper(),
            status.value,
            rng.random() < 0.05,
            received,
            received,
            1,
            1,
            os.urandom(64),
            os.urandom(64),
            os.urandom(64),
            os.urandom(32),
            os.urandom(32),
            os.urandom(32),
            assignee,
            indexed,
            False,
        )
        tip_tags = []
        if indexed:
            tip_tags = [tags.tag(key, "tactic", tactic) for tactic in rng.sample(TACTICS, 2)]
            tip_tags.append(tags.tag(key, "country", rng.choice(COUNTRIES)))
        yield row, tip_tags


def populate(database: Database, count: int, staff: Staff, intake_private: sealing.PrivateKey) -> None:
    """COPY in statements of COPY_ROWS tips, then their tags, then cases over verified tips."""
    rng = random.Random(100_000)  # noqa: S311 - benchmark data, not secrets
    key = tags.filter_key(intake_private, 1)
    verified: list[uuid.UUID] = []
    raw = database.engine.raw_connection()
    try:
        cursor = raw.cursor()
        rows = generated_tips(count, staff, key, rng)
        for offset in range(0, count, COPY_ROWS):
            tip_tags: list[tuple[uuid.UUID, bytes]] = []
            with cursor.copy(f"COPY tips ({TIP_COLUMNS}) FROM STDIN") as copy:
                for _ in range(min(COPY_ROWS, count - offset)):
                    row, its_tags = next(rows)
                    copy.write_row(row)
                    tip_tags.extend((row[0], tag) for tag in its_tags)  # type: ignore[misc]
                    if row[2] == TipStatus.VERIFIED.value and len(verified) < count // 200:
                        verified.append(row[0])  # type: ignore[arg-type]
            with cursor.copy("COPY tip_tags (tip_id, tag) FROM STDIN") as copy:
                for tip_tag in tip_tags:
                    copy.write_row(tip_tag)
            raw.commit()
            progress(f"{offset + min(COPY_ROWS, count - offset):,} tips")
        cases: list[tuple[object, ...]] = []
        case_tips: list[tuple[object, ...]] = []
        members: list[tuple[object, ...]] = []
        for number in range(count // 1000):
            case_id, restricted = uuid.uuid4(), number % 10 == 0
            cases.append(
                (
                    case_id,
                    f"C-{number:08d}",
                    "open",
                    restricted,
                    dt.date(2025, 1, 1),
                    staff.lead,
                    1,
                    1,
                    os.urandom(64),
                    os.urandom(64),
                    os.urandom(64),
                )
            )
            case_tips.extend((case_id, tip_id) for tip_id in verified[number * 5 : (number + 1) * 5])
            members.append((case_id, staff.lead))
        copies = (
            ("cases", CASE_COLUMNS, cases),
            ("case_tips", "case_id, tip_id", case_tips),
            ("case_members", "case_id, account_id", members),
        )
        for table, columns, values in copies:
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for value in values:
                    copy.write_row(value)
        raw.commit()
    finally:
        raw.close()
    # As autovacuum would leave a settled table: statistics, and a visibility map that lets
    # index-only scans skip the heap. (Outside a transaction, on a connection of its own: one
    # left in autocommit would run every timed call below without a transaction.)
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")


def timed_ms(
    database: Database,
    call: Callable[[Session], object],
    rounds: int,
    prepare: Callable[[], object] = lambda: None,
) -> tuple[float, float]:
    durations = []
    for _ in range(rounds + 3):
        prepare()
        with database.transaction() as session:
            start = time.perf_counter()
            call(session)
            durations.append((time.perf_counter() - start) * 1e3)
    ordered = sorted(durations[3:])  # the first calls warm the caches
    return statistics.median(ordered), ordered[int(len(ordered) * 0.9)]


def deep_cursor(database: Database, principal: Principal, filters: QueueFilters) -> str:
    """The cursor a reader holds after paging through DEEP_FRACTION of the queue."""
    statement = tips_visible_to(principal)
    if filters.status is not None:
        statement = statement.where(Tip.status == filters.status)
    with database.transaction() as session:
        total = session.scalar(select(func.count()).select_from(statement.subquery()))
        assert total is not None
        last_read = session.scalars(
            statement.order_by(Tip.urgent.desc(), Tip.received_on, Tip.id)
            .offset(int(total * DEEP_FRACTION))
            .limit(1)
        ).one()
        return service._encode_cursor(last_read)  # the format only the service knows


def changes_before_each_read(database: Database, rng: random.Random) -> Callable[[], object]:
    """Commits CHANGES_BEFORE_READ status changes, so the next read has them to fold."""

    def change_statuses() -> None:
        with database.transaction() as session:
            tip_ids = session.scalars(
                select(Tip.id)
                .where(Tip.status == TipStatus.NEW)
                .offset(rng.randrange(10_000))
                .limit(CHANGES_BEFORE_READ)
            ).all()
            session.execute(update(Tip).where(Tip.id.in_(tip_ids)).values(status=TipStatus.IN_REVIEW))
            session.execute(update(Tip).where(Tip.id.in_(tip_ids)).values(status=TipStatus.NEW))

    return change_statuses


def bench_size(admin_url: str, count: int, rounds: int) -> None:
    admin = create_engine(admin_url, connect_args={"connect_timeout": 3})
    schema = f"daylight_bench_queue_{secrets.token_hex(4)}"
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in admin_url else "?"
    engine = create_database_engine(f"{admin_url}{separator}options=-csearch_path%3D{schema}")
    database = Database(engine, sessionmaker(engine, expire_on_commit=False))
    try:
        upgrade_to_head(engine)
        with database.transaction() as session:
            _, intake_private, _ = create_intake_key(session, key_integrity_key=os.urandom(32))
            staff = Staff(
                caseworker=uuid.uuid4(),
                lead=uuid.uuid4(),
                others=tuple(uuid.uuid4() for _ in range(OTHER_CASEWORKERS)),
            )
            session.add_all(
                [
                    StaffAccount(
                        id=staff.caseworker,
                        username="bench-caseworker",
                        role=Role.CASEWORKER,
                        created_on=dt.date.today(),
                    ),
                    StaffAccount(
                        id=staff.lead, username="bench-lead", role=Role.LEAD, created_on=dt.date.today()
                    ),
                    *(
                        StaffAccount(
                            id=other,
                            username=f"bench-caseworker-{number}",
                            role=Role.CASEWORKER,
                            created_on=dt.date.today(),
                        )
                        for number, other in enumerate(staff.others)
                    ),
                ]
            )
        progress(f"loading {count:,} tips")
        started = time.perf_counter()
        populate(database, count, staff, intake_private)
        loaded = time.perf_counter() - started
        started = time.perf_counter()
        with database.transaction() as session:
            fold_queue_count_changes(session)
        folded = time.perf_counter() - started
        principal = Principal(
            account_id=staff.caseworker,
            username="bench-caseworker",
            role=Role.CASEWORKER,
            session_id=uuid.uuid4(),
            keys=UnlockedKeys(personal=sealing.generate_private_key(), intake={1: intake_private}),
            reauthenticated_at=dt.datetime.now(dt.UTC),
            csrf_token="",
        )
        with database.transaction() as session:
            second = service.list_queue(session, principal, QueueFilters()).next_cursor
        rejected = QueueFilters(status=TipStatus.REJECTED)
        ready: Callable[[], object] = lambda: None  # noqa: E731 - most reads find nothing to fold
        cases: list[tuple[str, QueueFilters, Callable[[], object]]] = [
            ("first page (50, urgent then oldest)", QueueFilters(), ready),
            ("filtered: status=new", QueueFilters(status=TipStatus.NEW), ready),
            ("filtered: mine + needs_info", QueueFilters(mine=True, status=TipStatus.NEEDS_INFO), ready),
            ("filtered: unassigned + urgent", QueueFilters(unassigned=True, urgent=True), ready),
            ("filtered: tactic=surveillance (blind index)", QueueFilters(tactic="surveillance"), ready),
            ("filtered: country=IE + urgent", QueueFilters(country="IE", urgent=True), ready),
            ("filtered: tactic + country", QueueFilters(tactic="surveillance", country="IE"), ready),
            ("second page (keyset cursor)", QueueFilters(cursor=second), ready),
            (
                f"deep page (after {DEEP_FRACTION:.0%} of the queue)",
                QueueFilters(cursor=deep_cursor(database, principal, QueueFilters())),
                ready,
            ),
            (
                f"deep page, status=rejected (after {DEEP_FRACTION:.0%})",
                rejected.model_copy(update={"cursor": deep_cursor(database, principal, rejected)}),
                ready,
            ),
            (
                f"first page, folding {CHANGES_BEFORE_READ * 2} changes",
                QueueFilters(),
                changes_before_each_read(database, random.Random(7)),  # noqa: S311 - benchmark data
            ),
        ]
        floor = timed_ms(database, lambda session: session.execute(text("SELECT 1")).scalar_one(), rounds)
        title = f"queue over {count:,} tips (PostgreSQL)"
        print(f"\n{title:<52} {'median':>10} {'p90':>10} {'x floor':>8}  target {TARGET_MS:.0f} ms")
        print(
            f"  (loaded in {loaded:.0f} s through the triggers; the first fold took {folded * 1e3:.0f} ms; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )
        print(f"{'transaction with SELECT 1 (floor)':<52} {floor[0]:>7.2f} ms {floor[1]:>7.2f} ms")
        for name, filters, prepare in cases:

            def read_page(session: Session, filters: QueueFilters = filters) -> object:
                return service.list_queue(session, principal, filters)

            median, p90 = timed_ms(database, read_page, rounds, prepare)
            verdict = "ok" if median < TARGET_MS else "MISSED"
            print(
                f"{name:<52} {median:>7.2f} ms {p90:>7.2f} ms {median / floor[0]:>7.1f}x  {verdict}",
                flush=True,
            )
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--tips",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="queue sizes to load and time, one run each (default: 100000 1000000)",
    )
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    try:
        with create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3}).connect():
            pass
    except Exception as exc:  # no PostgreSQL: say so, do not fail the other benchmarks
        print(f"queue benchmark skipped: {POSTGRES_URL} is unreachable ({type(exc).__name__})")
        return 0
    for count in args.tips:
        bench_size(POSTGRES_URL, count, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
