"""Time what the row MACs cost: each path with its checks, side by side with them patched out.

    make bench        (or: .venv/bin/python bench/row_macs.py [--rounds N] [--no-http] [--json])

On SQLite and, when reachable, PostgreSQL (a throwaway schema on
postgresql+psycopg://postgres@127.0.0.1:5432/test, or DAYLIGHT_TEST_POSTGRES_URL), an organisation
with QUEUE_TIPS reports submitted through the intake service, a caseworker holding the intake key
and a report carrying MESSAGES messages (half from staff, half from the submitter). Timed, one
transaction each (commit included, as the services commit them):

* submission: a report through ``start_tip``/``finish_tip``; a submitter's follow-up message
  (``tip_for_receipt``, which now also derives the receipt key and checks it against the report's
  MAC'd one, then ``add_message``, which MACs the row);
* follow-up read: ``tip_for_receipt`` and ``followup_view`` (each message's MAC checked);
* staff: ``resume_session`` (its row's MAC, on every staff request), ``read_tip`` (each message's
  MAC) and ``list_queue`` (no MAC);
* and, unless ``--no-http``, the same through the apps (TestClient, in this process):
  POST /api/v1/tips, POST /api/v1/followup and GET /api/v1/tips/{id}.

"without" stands for today's figure, before the MACs: every check is replaced by a no-op at the
name its caller looks it up under (NO_OP_CHECKS). Each round runs every operation once with and
once without, back to back, the order swapped every round, so that machine noise hits both alike.
The table shows the medians of wall time, their ratio (with / without), the median of the
paired differences (Δ µs), and the ratio of the medians of this process's CPU time ("cpu ratio":
not slowed by other processes on a shared machine, but blind to PostgreSQL's own work). A
tip's submission and the queue do no row-MAC work: their ratio is 1 within the run's noise,
which they show. Follow-up files are not timed (one HMAC beside an upload); the last line
gives one row MAC and one receipt-key derivation alone. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

# Run as a script, this file's directory is on sys.path: its neighbours lend their fixtures.
import key_rotation as rotation_bench
from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from app.auth.deps import SECURE_COOKIE_NAME
from app.auth.models import Role, StaffAccount
from app.auth.principal import Principal, UnlockedKeys
from app.auth.sessions import resume_session, start_session
from app.crypto import sealing
from app.crypto.integrity import row_mac
from app.entrypoints.apps import create_intake_app, create_staff_app
from app.intake import service as intake_service
from app.intake.models import MessageAuthor, Tip
from app.intake.receipts import receipt_private_key
from app.intake.schemas import TipSubmission
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from app.triage.reading import read_tip
from app.triage.service import list_queue

QUEUE_TIPS = 100
BASE_URL = "https://testserver"
MESSAGES = 10
WARM_UP = 3
# Every check on the timed paths, where its caller looks it up, and the no-op that stands in.
NO_OP_CHECKS: tuple[tuple[str, Callable[..., object]], ...] = (
    ("app.intake.service.seal_message_row", lambda *_: None),
    ("app.intake.service.message_is_authentic", lambda *_: True),
    ("app.intake.service._receipt_opens", lambda *_: True),
    ("app.triage.reading.message_is_authentic", lambda *_: True),
    ("app.auth.sessions._session_fields", lambda *_: ()),
    ("app.auth.sessions.row_is_authentic", lambda *_: True),
)
TIP_JSON = {
    "narrative": "A report for the benchmark. " * 20,
    "language": "en",
    "tactics": ["surveillance"],
    "host_country": "NL",
    "host_city": "Rotterdam",
    "urgent": False,
}
SUBMISSION = TipSubmission.model_validate(TIP_JSON)


@contextmanager
def checks_removed() -> Iterator[None]:
    with ExitStack() as stack:
        for target, no_op in NO_OP_CHECKS:
            stack.enter_context(mock.patch(target, no_op))
        yield


@dataclass(frozen=True)
class Organisation:
    database: Database
    settings: Settings
    secrets: ServerSecrets
    principal: Principal
    cookie: str
    read_tip_id: uuid.UUID
    read_receipt: str
    message_receipt: str

    def open_receipt(self, session: Session, receipt: str) -> intake_service.ReceiptHolder:
        holder = intake_service.tip_for_receipt(
            session,
            receipt,
            receipt_pepper=self.secrets.receipt_pepper,
            key_integrity_key=self.secrets.key_integrity_key,
        )
        assert holder is not None
        return holder


def new_organisation(database: Database, data_dir: Path) -> Organisation:
    """QUEUE_TIPS reports, a caseworker with a session, a report with MESSAGES messages and one to
    answer; every row written with its MAC."""
    unlocked, _, _ = rotation_bench.new_organisation(database, data_dir, QUEUE_TIPS)
    settings = Settings(data_dir=data_dir)
    secrets = load_server_secrets(settings.secrets_dir)
    with database.transaction() as session:
        account = StaffAccount(
            id=uuid.uuid4(), username="bench-caseworker", role=Role.CASEWORKER, created_on=dt.date.today()
        )
        session.add(account)
        session.flush()
        keys = UnlockedKeys(personal=sealing.generate_private_key(), intake=unlocked)
        cookie = start_session(session, account, keys, integrity_key=secrets.key_integrity_key)
        receipts, tip_ids = [], []
        for _ in range(2):
            draft = intake_service.start_tip(session, secrets)
            receipts.append(intake_service.finish_tip(session, draft, SUBMISSION))
            tip_ids.append(draft.id)
        read_tip_row = session.get_one(Tip, tip_ids[0])
        for number in range(MESSAGES):
            staff = number % 2 == 0
            intake_service.add_message(
                session,
                read_tip_row,
                f"Message {number} of the benchmark. " * 5,
                author=MessageAuthor.STAFF if staff else MessageAuthor.SUBMITTER,
                server_secrets=secrets,
                author_account_id=account.id if staff else None,
            )
    with database.transaction() as session:
        principal = resume_session(session, cookie, settings, integrity_key=secrets.key_integrity_key)
        assert isinstance(principal, Principal)
    return Organisation(database, settings, secrets, principal, cookie, tip_ids[0], receipts[0], receipts[1])


def service_operations(org: Organisation) -> dict[str, Callable[[], None]]:
    """One call per operation, each in its own transaction."""
    keys = org.secrets.key_integrity_key

    def submit() -> None:
        with org.database.transaction() as session:
            intake_service.finish_tip(session, intake_service.start_tip(session, org.secrets), SUBMISSION)

    def followup_message() -> None:
        with org.database.transaction() as session:
            intake_service.add_message(
                session,
                org.open_receipt(session, org.message_receipt).tip,
                "A follow-up message for the benchmark. " * 5,
                author=MessageAuthor.SUBMITTER,
                server_secrets=org.secrets,
            )

    def followup_read() -> None:
        with org.database.transaction() as session:
            view = intake_service.followup_view(org.open_receipt(session, org.read_receipt))
            assert len(view.messages) == MESSAGES

    def resume() -> None:
        with org.database.transaction() as session:
            principal = resume_session(session, org.cookie, org.settings, integrity_key=keys)
            assert isinstance(principal, Principal)

    def read() -> None:
        with org.database.transaction() as session:
            detail = read_tip(session, org.principal, org.read_tip_id, integrity_key=keys)
            assert len(detail.messages) == MESSAGES

    def queue() -> None:
        with org.database.transaction() as session:
            assert list_queue(session, org.principal).items

    return {
        "submit a tip (no row MAC)": submit,
        "follow-up message (receipt + add_message)": followup_message,
        f"follow-up read, {MESSAGES} messages": followup_read,
        "staff: resume_session": resume,
        f"staff: read_tip, {MESSAGES} messages": read,
        "staff: list_queue (no MAC)": queue,
    }


@contextmanager
def http_operations(org: Organisation) -> Iterator[dict[str, Callable[[], None]]]:
    """The same paths through the apps, in this process (so the patches reach them)."""
    with (
        TestClient(create_intake_app(org.settings, database=org.database), base_url=BASE_URL) as intake,
        TestClient(create_staff_app(org.settings, database=org.database), base_url=BASE_URL) as staff,
    ):
        cookie = {"Cookie": f"{SECURE_COOKIE_NAME}={org.cookie}"}

        def post_tip() -> None:
            response = intake.post("/api/v1/tips", json=TIP_JSON)
            assert response.status_code == 201, response.text

        def post_followup() -> None:
            response = intake.post("/api/v1/followup", json={"receipt": org.read_receipt})
            assert response.status_code == 200, response.text
            assert len(response.json()["messages"]) == MESSAGES

        def get_tip() -> None:
            response = staff.get(f"/api/v1/tips/{org.read_tip_id}", headers=cookie)
            assert response.status_code == 200, response.text
            assert len(response.json()["messages"]) == MESSAGES

        yield {
            "HTTP POST /api/v1/tips (no row MAC)": post_tip,
            f"HTTP POST /api/v1/followup, {MESSAGES} messages": post_followup,
            f"HTTP GET /api/v1/tips/{{id}}, {MESSAGES} messages": get_tip,
        }


@dataclass
class Series:
    """(wall, process CPU) seconds of each call, with the checks and without."""

    with_checks: list[tuple[float, float]]
    without: list[tuple[float, float]]

    def summary(self) -> dict[str, float]:
        def median(values: list[tuple[float, float]], clock: int) -> float:
            return statistics.median(value[clock] for value in values)

        paired = [a[0] - b[0] for a, b in zip(self.with_checks, self.without, strict=True)]
        with_ms, without_ms = median(self.with_checks, 0) * 1e3, median(self.without, 0) * 1e3
        return {
            "with_ms": round(with_ms, 3),
            "without_ms": round(without_ms, 3),
            "ratio": round(with_ms / without_ms, 3),
            "delta_us": round(statistics.median(paired) * 1e6, 1),
            "cpu_ratio": round(median(self.with_checks, 1) / median(self.without, 1), 3),
        }


def elapsed(call: Callable[[], None], *, checked: bool) -> tuple[float, float]:
    with ExitStack() as stack:
        if not checked:
            stack.enter_context(checks_removed())
        gc.disable()  # as timeit does: a collection lands on whichever call happens to run
        try:
            start, cpu = time.perf_counter(), time.process_time()
            call()
            return time.perf_counter() - start, time.process_time() - cpu
        finally:
            gc.enable()


def measure(operations: dict[str, Callable[[], None]], rounds: int) -> dict[str, dict[str, float]]:
    """Each round, each operation with and without the checks, the order swapped every round."""
    series = {name: Series([], []) for name in operations}
    for number in range(WARM_UP + rounds):
        gc.collect()
        for name, call in operations.items():
            order = (True, False) if number % 2 == 0 else (False, True)
            timings = {checked: elapsed(call, checked=checked) for checked in order}
            if number >= WARM_UP:
                series[name].with_checks.append(timings[True])
                series[name].without.append(timings[False])
    return {name: values.summary() for name, values in series.items()}


def bench_backend(backend: str, rounds: int, http: bool) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "org"
        with rotation_bench.organisation_database(backend, data_dir) as database:
            assert database is not None  # only asked for once PostgreSQL has answered
            org = new_organisation(database, data_dir)
            results = measure(service_operations(org), rounds)
            if http:
                with http_operations(org) as operations:
                    results |= measure(operations, rounds)
            return results


def reference_us() -> dict[str, float]:
    """What one check costs alone: a row MAC, and deriving a receipt's key pair and public key."""
    key, body = os.urandom(32), os.urandom(400)
    fields = (str(uuid.uuid4()), str(uuid.uuid4()), 3, "staff", str(uuid.uuid4()), body, body)
    private = receipt_private_key(os.urandom(32), "1" * 24)
    calls: dict[str, Callable[[], object]] = {
        "row_mac, a message row": lambda: row_mac(key, "tip_message/v1", *fields),
        "receipt public key from its private key": private.public_key,
    }
    return {
        name: round(min(timeit.repeat(call, number=200, repeat=5)) / 200 * 1e6, 1)
        for name, call in calls.items()
    }


def postgres_answers() -> bool:
    engine = create_engine(rotation_bench.POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except Exception as exc:  # no PostgreSQL: say so, do not fail the other benchmarks
        print(f"row MAC benchmark on PostgreSQL skipped: unreachable ({type(exc).__name__})", file=sys.stderr)
        return False
    finally:
        engine.dispose()


Results = dict[str, dict[str, dict[str, float]]]  # backend → operation → figures


def print_table(rounds: int, results: Results, references: dict[str, float]) -> None:
    print(
        f"row MACs: with the checks vs. patched out, alternating, {rounds} rounds each "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    for backend, figures in results.items():
        print(f"{backend:<46} {'with ms':>9} {'without ms':>11} {'ratio':>6} {'Δ µs':>8} {'cpu ratio':>9}")
        for name, row in figures.items():
            print(
                f"  {name:<44} {row['with_ms']:>9.3f} {row['without_ms']:>11.3f} "
                f"{row['ratio']:>6.3f} {row['delta_us']:>+8.1f} {row['cpu_ratio']:>9.3f}"
            )
    print("alone: " + "; ".join(f"{name} {value:.1f} µs" for name, value in references.items()))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--no-http", action="store_true", help="only the service calls, not the apps")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if postgres_answers() else ["sqlite"]
    results = {backend: bench_backend(backend, args.rounds, not args.no_http) for backend in backends}
    references = reference_us()
    if args.json:
        document = {
            "rounds": args.rounds,
            "load_average": os.getloadavg()[0],
            "cores": os.cpu_count(),
            "backends": results,
            "alone_us": references,
        }
        print(json.dumps(document, indent=2))
    else:
        print_table(args.rounds, results, references)
    return 0


if __name__ == "__main__":
    sys.exit(main())
