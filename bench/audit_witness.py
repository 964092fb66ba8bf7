"""The checkpoint signer under load, consistency proofs at a million events, and a witness's round trip.

    make bench        (or: .venv/bin/python bench/audit_witness.py [--events N] [--load-seconds S]
                                     [--rounds N] [--proofs N] [--databases sqlite,postgresql] [--json])

Every figure is a median, a p95 or a ratio measured side by side in this run; nothing is held
against a fixed timing (the machines are shared and noisy). On SQLite, and on PostgreSQL in a
throwaway schema when postgresql+psycopg://postgres@127.0.0.1:5432/test (or
DAYLIGHT_TEST_POSTGRES_URL) answers:

* checkpoint delay under load: `daylight demo` + `daylight serve` with the default
  ``audit_checkpoint_delay_seconds``. Caseworker threads read demo tips (``tip.read`` is audited)
  while submitters post tips to the intake app; every ~100 ms a connection of the bench's own asks
  ``coverage()`` how old the oldest unsigned event is. Reported: events appended and checkpoints
  signed in the window, events per checkpoint, checkpoints per second × delay (at most 1: one
  signature per look), the longest time without a new checkpoint, the uncovered age, the
  signer's errors in the server log, and whether a SIGTERM left every event covered;
* witness round trip, on that server before it stops: a witness made and registered with the
  CLI, then ``--rounds`` in-process rounds (GET add-checkpoint, ``add_checkpoint``,
  ``save_state``, POST cosignatures) timed step by step, every other one after the next
  checkpoint (a grown tree, so a consistency proof) and the others at once (the same
  checkpoint); next to whole `daylight audit witness` runs and their floor,
  `daylight audit witness --help` (the interpreter and the imports);
* consistency proofs: bench/audit.py's fixture (``--events`` bulk-inserted, one
  ``write_checkpoint``), 1,000 events appended and a second checkpoint; then
  ``consistency_between`` for random sizes old ≤ new ≤ newest alternated with ``inclusion_proof``
  at random indices, each in a fresh session.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import functools
import itertools
import json
import os
import random
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's directory is on sys.path: its neighbours lend their fixtures.
import audit as audit_bench
import httpx2 as httpx
import load as load_bench
import psycopg
import pyotp
from psycopg import sql
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.audit_log import events, service
from app.audit_log.checkpoint import parse_verifier_key
from app.audit_log.cosignature import parse_witness_signer
from app.audit_log.merkle import inclusion_proof, verify_consistency, verify_inclusion
from app.audit_log.models import AuditCheckpoint, AuditEvent
from app.audit_log.proofs import consistency_between
from app.audit_log.signer import Coverage, coverage
from app.audit_log.witness import WitnessState, add_checkpoint, parse_add_checkpoint_request, save_state
from app.kit.config import Settings
from app.kit.db import READ_ONLY_OPTION, Database, create_database_engine
from app.schema import upgrade_to_head

DELAY_SECONDS = float(Settings.model_fields["audit_checkpoint_delay_seconds"].default)
SAMPLE_SECONDS = 0.1
APPENDED_EVENTS = 1_000
CLI_RUNS = 3
CLI_RUN, CLI_HELP, BARE_PYTHON = "daylight audit witness", "daylight audit witness --help", "python -c pass"
SUBMIT_PAUSE_SECONDS = 0.1  # after a 503, as bench/load.py's submitters
WITNESS_NAME = "bench.example/witness"
TIP = {"narrative": "A caller from the station phoned my father again.", "language": "en"}
CASES = ("tree grew", "same checkpoint")
WITNESS_STEPS = ("GET add-checkpoint", "add_checkpoint()", "save_state()", "POST cosignatures", "round")


def stats(seconds: list[float]) -> dict[str, float]:
    return {
        "n": len(seconds),
        "median_ms": statistics.median(seconds) * 1e3,
        "p95_ms": load_bench.percentile(seconds, 0.95) * 1e3,
    }


def daylight(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*load_bench.daylight_command(), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"daylight {' '.join(args[:3])} exited {done.returncode}: {done.stderr[-1500:]}")
    return done


# --- A served demo organisation ------------------------------------------------------------------------


@dataclass
class Served:
    database: str
    organisation: load_bench.Organisation
    server: load_bench.Server
    intake: str
    staff: str
    engine: Engine  # the bench's own connections to the served database


def server_environment() -> dict[str, str]:
    """No DAYLIGHT_ setting of the caller's (the delay is the default); logins cheap to set up."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DAYLIGHT_")}
    env["DAYLIGHT_ARGON2__TIME_COST"] = "1"
    env["DAYLIGHT_ARGON2__MEMORY_COST_KIB"] = "8"
    return env


@contextlib.contextmanager
def served(database: str, scratch: Path) -> Iterator[Served]:
    """`daylight demo` then `daylight serve` on free ports; stopped, and its schema dropped, at the end.

    Not bench/load.py's running_server: its start is not guarded, and a Ctrl-C while the server
    comes up would leave it running. Here the process group is stopped whatever happens.
    """
    with load_bench.demo_organisation(database, scratch, server_environment()) as organisation:
        ports = [load_bench.free_port(), load_bench.free_port()]
        flags = {
            "--data-dir": organisation.data_dir,
            "--host": load_bench.HOST,
            "--intake-port": ports[0],
            "--staff-port": ports[1],
        }
        log = scratch / f"serve-{database}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [
                    *load_bench.daylight_command(),
                    "serve",
                    *(str(part) for pair in flags.items() for part in pair),
                ],
                env=organisation.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            give_up = time.monotonic() + load_bench.STARTUP_SECONDS
            while not all(load_bench.http_ok(port, "/healthz") for port in ports):
                if process.poll() is not None or time.monotonic() > give_up:
                    raise RuntimeError(
                        f"daylight serve did not start: {log.read_text(errors='replace')[-2000:]}"
                    )
                time.sleep(0.2)
            url = organisation.env.get("DAYLIGHT_DATABASE_URL") or (
                f"sqlite+pysqlite:///{organisation.data_dir / 'daylight.sqlite3'}"
            )
            engine = create_database_engine(url)
            try:
                server = load_bench.Server("daylight", process, ports[0], log)
                base = f"http://{load_bench.HOST}:"
                yield Served(database, organisation, server, f"{base}{ports[0]}", f"{base}{ports[1]}", engine)
            finally:
                engine.dispose()
        finally:
            load_bench.stop_group(process)


def logged_in(target: Served, role: str) -> httpx.Client:
    users = json.loads((target.organisation.data_dir / "demo-credentials.json").read_text())["users"]
    user = next(user for user in users if user["role"] == role)
    client = httpx.Client(base_url=target.staff, timeout=30)
    login = {
        "username": user["username"],
        "password": user["password"],
        "otp": pyotp.TOTP(user["totp_secret"]).now(),
    }
    response = client.post("/api/v1/auth/login", json=login)
    if response.status_code != 200:
        client.close()
        raise RuntimeError(
            f"the demo {role} could not log in ({response.status_code}): {response.text[:200]}"
        )
    return client


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    """A read-only transaction of the bench's own (on SQLite a deferred BEGIN: no write lock)."""
    with engine.connect() as connection:
        connection.execution_options(**{READ_ONLY_OPTION: True})
        with Session(bind=connection) as session:
            yield session


def read_coverage(engine: Engine) -> tuple[Coverage, int]:
    """coverage() and the number of checkpoints."""
    with reading(engine) as session:
        checkpoints = session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0
        return coverage(session), checkpoints


def signed_since(engine: Engine, size: int) -> list[dt.datetime]:
    """When each checkpoint past ``size`` was signed, oldest first."""
    with reading(engine) as session:
        moments = session.scalars(
            select(AuditCheckpoint.created_at)
            .where(AuditCheckpoint.tree_size > size)
            .order_by(AuditCheckpoint.tree_size)
        ).all()
    return [moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC) for moment in moments]


# --- 1. The checkpoint delay under load ----------------------------------------------------------------


@dataclass
class Traffic:
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reads: collections.Counter[str] = field(default_factory=collections.Counter)
    submissions: collections.Counter[str] = field(default_factory=collections.Counter)
    ages: list[float] = field(default_factory=list)
    sample_errors: list[str] = field(default_factory=list)


def drive(
    traffic: Traffic,
    client: httpx.Client,
    counts: collections.Counter[str],
    send: Callable[[httpx.Client, int], httpx.Response],
) -> None:
    with client:
        number = 0
        while not traffic.stop.is_set():
            try:
                status = str(send(client, number).status_code)
            except httpx.TransportError as exc:
                status = type(exc).__name__
            with traffic.lock:
                counts[status] += 1
            number += 1
            if status == "503":
                traffic.stop.wait(SUBMIT_PAUSE_SECONDS)


def sample_coverage(traffic: Traffic, engine: Engine) -> None:
    while not traffic.stop.is_set():
        started = time.monotonic()
        try:
            seen, _ = read_coverage(engine)
        except Exception as exc:  # a failed look is reported, never fatal to the run
            traffic.sample_errors.append(f"{type(exc).__name__}: {exc}"[:200])
        else:
            oldest = seen.oldest_unsigned_at
            age = (dt.datetime.now(dt.UTC) - oldest).total_seconds() if oldest is not None else 0.0
            traffic.ages.append(max(0.0, age))
        traffic.stop.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - started)))


def checkpoint_delay(target: Served, caseworker: httpx.Client, args: argparse.Namespace) -> dict[str, Any]:
    tip_ids = [item["id"] for item in caseworker.get("/api/v1/tips").json()["items"]]
    if not tip_ids:
        raise RuntimeError("the demo caseworker sees no tip to read")
    for tip_id in tip_ids:  # the first read of a tip indexes it: not what the window measures
        caseworker.get(f"/api/v1/tips/{tip_id}")
    traffic = Traffic()

    def read(client: httpx.Client, number: int) -> httpx.Response:
        return client.get(f"/api/v1/tips/{tip_ids[number % len(tip_ids)]}")

    def submit(client: httpx.Client, number: int) -> httpx.Response:
        return client.post("/api/v1/tips", json={**TIP, "narrative": f"{TIP['narrative']} Call {number}."})

    workers = [
        threading.Thread(
            target=drive,
            args=(
                traffic,
                httpx.Client(base_url=target.staff, cookies=caseworker.cookies, timeout=30),
                traffic.reads,
                read,
            ),
            daemon=True,
        )
        for _ in range(args.readers)
    ] + [
        threading.Thread(
            target=drive,
            args=(traffic, httpx.Client(base_url=target.intake, timeout=30), traffic.submissions, submit),
            daemon=True,
        )
        for _ in range(args.submitters)
    ]
    workers.append(threading.Thread(target=sample_coverage, args=(traffic, target.engine), daemon=True))
    before, checkpoints_before = read_coverage(target.engine)
    started, wall_start = time.monotonic(), dt.datetime.now(dt.UTC)
    try:
        for worker in workers:
            worker.start()
        traffic.stop.wait(args.load_seconds)
    finally:
        traffic.stop.set()
        for worker in workers:
            worker.join(timeout=35)
    after, checkpoints_after = read_coverage(target.engine)
    window = time.monotonic() - started
    load_bench.still_running(target.server)
    # Events were pending all through the window: every gap between signatures is signer delay.
    moments = [wall_start, *signed_since(target.engine, before.signed_size), dt.datetime.now(dt.UTC)]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(moments)]
    appended = after.events - before.events
    signed = checkpoints_after - checkpoints_before
    ages = traffic.ages or [0.0]
    return {
        "database": target.database,
        "delay_s": DELAY_SECONDS,
        "window_s": window,
        "readers": args.readers,
        "submitters": args.submitters,
        "tip_reads": dict(traffic.reads),
        "submissions": dict(traffic.submissions),
        "events_appended": appended,
        "checkpoints_signed": signed,
        "events_per_checkpoint": appended / signed if signed else None,
        "checkpoints_per_s": signed / window,
        "checkpoints_per_s_times_delay": signed / window * DELAY_SECONDS,
        "longest_gap_without_checkpoint_s": max(gaps),
        "samples": len(traffic.ages),
        "sample_errors": traffic.sample_errors[:3],
        "uncovered_share": sum(age > 0 for age in ages) / len(ages),
        "uncovered_age_median_s": statistics.median(ages),
        "uncovered_age_p95_s": load_bench.percentile(ages, 0.95),
        "uncovered_age_max_s": max(ages),
    }


def stop_and_check(target: Served) -> dict[str, Any]:
    """SIGTERM, as at a clean stop: the server signs what is left on its way out."""
    started = time.monotonic()
    load_bench.stop_group(target.server.process)
    stop_seconds = time.monotonic() - started
    left, _ = read_coverage(target.engine)
    failed: collections.Counter[str] = collections.Counter()
    for line in target.server.log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "checkpoint" in str(record.get("message", "")):
                failed[str(record.get("exception", record.get("message")))] += 1
    return {
        "stop_s": stop_seconds,
        "exit_status": target.server.process.returncode,
        "events_after_stop": left.events,
        "signed_after_stop": left.signed_size,
        "covered_after_stop": left.events == left.signed_size,
        "signer_errors_logged": dict(failed),
    }


# --- 3. A witness's round trip ---------------------------------------------------------------------------


def await_checkpoint_past(engine: Engine, size: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while read_coverage(engine)[0].signed_size <= size:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no checkpoint past size {size} within {timeout:g} s")
        time.sleep(0.02)


def witness_round_trip(
    target: Served, auditor: httpx.Client, scratch: Path, rounds: int, cli_runs: int
) -> dict[str, Any]:
    machine = scratch / f"witness-{target.database}"
    machine.mkdir()
    state_file, token_file = machine / "state.json", machine / "token"
    env = target.organisation.env
    # One witness (one key pair) for every log it follows; a state file per log.
    key_file, verifier_file = scratch / "witness.key", scratch / "witness.pub"
    if not key_file.exists():
        made = daylight(
            "audit", "witness-keygen", "--name", WITNESS_NAME, "--key-file", str(key_file), env=env
        )
        verifier_file.write_text(made.stdout.strip())
    data_dir = str(target.organisation.data_dir)
    added = daylight(
        "audit",
        "witnesses",
        "add",
        "--data-dir",
        data_dir,
        "--verifier-key",
        verifier_file.read_text(),
        env=env,
    )
    token = next(word for word in added.stdout.split() if word.startswith("dlw_"))
    token_file.write_text(token)
    log_key = parse_verifier_key(auditor.get("/api/v1/audit/checkpoint").json()["verifier_key"])
    name, private_key = parse_witness_signer(key_file.read_text().strip())

    # Odd rounds wait for the next checkpoint (as a witness run every few minutes finds the log:
    # grown, so the body carries a consistency proof), even ones go at once (a witness polling
    # again finds the same checkpoint). Round 0 pins the log (trust on first use): not timed.
    steps: dict[str, dict[str, list[float]]] = {case: {step: [] for step in WITNESS_STEPS} for case in CASES}
    proof_lines: dict[str, list[int]] = {case: [] for case in CASES}
    waits: list[float] = []
    state: WitnessState | None = None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=target.staff, headers=headers, timeout=30) as witness:
        for number in range(rounds + 1):
            if state is not None and number % 2:
                size = state.tree_size
                waits.append(audit_bench.timed(functools.partial(await_checkpoint_past, target.engine, size)))
            marks = [time.perf_counter()]
            got = witness.get(
                "/api/v1/audit/witness/add-checkpoint", params={"old": state.tree_size if state else 0}
            )
            marks.append(time.perf_counter())
            if got.status_code != 200:
                raise RuntimeError(f"add-checkpoint answered {got.status_code}: {got.text[:200]}")
            new_state, line = add_checkpoint(state, got.text, log_key, private_key, name, int(time.time()))
            marks.append(time.perf_counter())
            save_state(state_file, new_state)
            marks.append(time.perf_counter())
            cosignature = {"tree_size": new_state.tree_size, "cosignatures": line}
            posted = witness.post("/api/v1/audit/witness/cosignatures", json=cosignature)
            marks.append(time.perf_counter())
            if posted.status_code != 201:
                raise RuntimeError(f"the cosignature was refused ({posted.status_code}): {posted.text[:200]}")
            if state is not None:
                case = CASES[0] if new_state.tree_size > state.tree_size else CASES[1]
                for step, start, end in zip(WITNESS_STEPS, marks, marks[1:], strict=False):
                    steps[case][step].append(end - start)
                steps[case]["round"].append(marks[-1] - marks[0])
                proof_lines[case].append(len(parse_add_checkpoint_request(got.text)[1]))
            state = new_state

    # Whole command runs, alternated with their floors: the same interpreter start and imports
    # (--help), and the bare interpreter.
    cli: dict[str, list[float]] = {CLI_RUN: [], CLI_HELP: [], BARE_PYTHON: []}
    run = ("audit", "witness", "--url", target.staff, "--state", str(state_file), "--key", str(key_file))
    for _ in range(cli_runs):
        cli[CLI_RUN].append(
            audit_bench.timed(lambda: daylight(*run, "--token-file", str(token_file), env=env))
        )
        cli[CLI_HELP].append(audit_bench.timed(lambda: daylight("audit", "witness", "--help", env=env)))
        cli[BARE_PYTHON].append(
            audit_bench.timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
        )
    return {
        "database": target.database,
        "rounds": rounds,
        "wait_for_next_checkpoint": stats(waits) if waits else None,
        "steps": {
            case: {step: stats(values) for step, values in series.items() if values}
            for case, series in steps.items()
        },
        "proof_lines_max": {case: max(lines, default=0) for case, lines in proof_lines.items()},
        "cli": {what: stats(values) for what, values in cli.items() if values},
    }


def serve_and_measure(
    database: str, scratch: Path, args: argparse.Namespace, cli_runs: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    audit_bench.progress(f"{database}: `daylight demo` and `daylight serve`")
    with served(database, scratch) as target:
        with (
            contextlib.closing(logged_in(target, "caseworker")) as caseworker,
            contextlib.closing(logged_in(target, "auditor")) as auditor,
        ):
            audit_bench.progress(f"{database}: {args.load_seconds:g} s of audited reads and submissions")
            delay = checkpoint_delay(target, caseworker, args)
            audit_bench.progress(f"{database}: {args.rounds} witness rounds")
            witness = witness_round_trip(target, auditor, scratch, args.rounds, cli_runs)
        delay |= stop_and_check(target)
    return delay, witness


# --- 2. Consistency proofs over a large log ----------------------------------------------------------------


def copy_events(engine: Engine, count: int) -> None:
    """PostgreSQL's bulk path (COPY) for bench/audit.py's rows; its bulk_insert speaks SQLite's."""
    columns = ", ".join(column.name for column in AuditEvent.__table__.columns)
    raw = engine.raw_connection()
    try:
        connection = raw.driver_connection
        with connection.cursor() as cursor, cursor.copy(f"COPY audit_events ({columns}) FROM STDIN") as copy:
            for row in audit_bench.event_rows(engine, count):
                copy.write_row(row)
        connection.commit()
    finally:
        raw.close()


def run_admin(statement: sql.Composed) -> None:
    with psycopg.connect(load_bench.psycopg_url(), autocommit=True, connect_timeout=5) as admin:
        admin.execute(statement)


@contextlib.contextmanager
def fresh_database(database: str) -> Iterator[Database]:
    """An empty, migrated database: a SQLite file in a temp dir, or a PostgreSQL schema; both removed."""
    with contextlib.ExitStack() as cleanup:
        if database == "sqlite":
            tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="daylight-proofs-")))
            url = f"sqlite+pysqlite:///{tmp / 'daylight.sqlite3'}"
        else:
            schema = f"daylight_bench_witness_{secrets.token_hex(4)}"
            run_admin(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            cleanup.callback(
                run_admin, sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
            separator = "&" if "?" in audit_bench.POSTGRES_URL else "?"
            url = f"{audit_bench.POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        engine = create_database_engine(url)
        cleanup.callback(engine.dispose)
        upgrade_to_head(engine)
        yield Database(engine, sessionmaker(engine, expire_on_commit=False))


def in_fresh_session(
    database: Database, call: Callable[[Session], list[bytes]], check: Callable[[Session, list[bytes]], bool]
) -> tuple[list[bytes], float]:
    """``call`` timed in a session of its own (its transaction begun first), then checked."""
    with database.session_factory() as session:
        session.connection()
        start = time.perf_counter()
        proof = call(session)
        elapsed = time.perf_counter() - start
        if not check(session, proof):
            raise AssertionError("a proof did not verify")
    return proof, elapsed


def consistency_of(old: int, new: int) -> Callable[[Session], list[bytes]]:
    return lambda session: consistency_between(session, old, new)


def inclusion_of(index: int, size: int) -> Callable[[Session], list[bytes]]:
    return lambda session: inclusion_proof(service.DatabaseNodeStore(session), index, size)


def proof_timings(database: str, count: int, proofs: int) -> dict[str, Any]:
    with fresh_database(database) as db:
        audit_bench.progress(f"{database}: inserting {count:,} events")
        bulk = audit_bench.bulk_insert if database == "sqlite" else copy_events
        insert_seconds = audit_bench.timed(lambda: bulk(db.engine, count))
        audit_bench.progress(f"{database}: write_checkpoint over them, {APPENDED_EVENTS:,} more, another")
        start = time.perf_counter()
        with db.transaction() as session:
            first = service.write_checkpoint(session, audit_bench.SIGNING_KEY, audit_bench.ORIGIN)
        checkpoint_seconds = time.perf_counter() - start
        with db.transaction() as session:
            for number in range(APPENDED_EVENTS):
                events.record(session, audit_bench.ACTOR, "bench.append", object_type="tip", object_id=number)
        with db.transaction() as session:
            second = service.write_checkpoint(session, audit_bench.SIGNING_KEY, audit_bench.ORIGIN)
        assert first is not None
        assert second is not None
        newest = second.tree_size
        assert newest == count + APPENDED_EVENTS

        # What a witness asks for, between the two checkpoints: checked against both signed roots.
        between, _ = in_fresh_session(
            db,
            consistency_of(first.tree_size, newest),
            lambda _, proof: verify_consistency(
                first.tree_size, newest, first.root_hash, second.root_hash, proof
            ),
        )
        audit_bench.progress(f"{database}: {proofs} consistency and {proofs} inclusion proofs")
        rng = random.Random(9162)  # noqa: S311 - benchmark sizes, not secrets
        series: dict[str, list[float]] = {"consistency": [], "inclusion": []}
        lengths: dict[str, list[int]] = {"consistency": [], "inclusion": []}
        for _ in range(proofs):
            old = rng.randint(1, newest)
            new, index = rng.randint(old, newest), rng.randrange(newest)
            proof, seconds = in_fresh_session(db, consistency_of(old, new), lambda _, proof: len(proof) <= 63)
            series["consistency"].append(seconds)
            lengths["consistency"].append(len(proof))
            proof, seconds = in_fresh_session(
                db,
                inclusion_of(index, newest),
                lambda session, proof, index=index: verify_inclusion(
                    audit_bench.stored_leaf(session, index), index, newest, proof, second.root_hash
                ),
            )
            series["inclusion"].append(seconds)
            lengths["inclusion"].append(len(proof))
    result: dict[str, Any] = {
        "database": database,
        "events": newest,
        "insert_s": insert_seconds,
        "first_checkpoint_s": checkpoint_seconds,
        "checkpoint_pair_proof_length": len(between),
    }
    for kind in series:
        result[kind] = stats(series[kind]) | {
            "length_median": statistics.median(lengths[kind]),
            "length_max": max(lengths[kind]),
        }
    result["consistency_over_inclusion"] = (
        result["consistency"]["median_ms"] / result["inclusion"]["median_ms"]
    )
    return result


# --- Output -----------------------------------------------------------------------------------------------


def print_summary(report: dict[str, Any]) -> None:
    print(
        f"checkpoint delay under load (audit_checkpoint_delay_seconds = {DELAY_SECONDS:g} s; age = now − "
        "oldest unsigned event, sampled every 0.1 s; gap = longest time without a new checkpoint)"
    )
    print(
        f"{'database':<11}{'window':>7}{'events':>8}{'ckpts':>6}{'ev/ckpt':>8}{'ckpt/s×delay':>13}"
        f"{'gap':>7}{'age med':>8}{'p95':>7}{'max':>7}{'max/delay':>10}"
    )
    for run in report["checkpoint_delay"]:
        per = "-" if run["events_per_checkpoint"] is None else f"{run['events_per_checkpoint']:.0f}"
        print(
            f"{run['database']:<11}{run['window_s']:>6.1f}s{run['events_appended']:>8}"
            f"{run['checkpoints_signed']:>6}{per:>8}{run['checkpoints_per_s_times_delay']:>13.2f}"
            f"{run['longest_gap_without_checkpoint_s']:>6.2f}s{run['uncovered_age_median_s']:>7.2f}s"
            f"{run['uncovered_age_p95_s']:>6.2f}s{run['uncovered_age_max_s']:>6.2f}s"
            f"{run['uncovered_age_max_s'] / DELAY_SECONDS:>10.2f}"
        )
        covered = "every event covered" if run["covered_after_stop"] else "EVENTS LEFT UNSIGNED"
        print(
            f"{'':<11}after SIGTERM ({run['stop_s']:.1f} s to stop): {covered} "
            f"({run['signed_after_stop']}/{run['events_after_stop']}); signer errors in the server log: "
            f"{run['signer_errors_logged'] or 'none'}"
        )
        print(
            f"{'':<11}traffic: {run['readers']} tip readers {run['tip_reads']}, {run['submitters']} "
            f"submitters {run['submissions']}; {run['samples']} samples, "
            f"{run['uncovered_share']:.0%} with unsigned events"
            + (f"; failed looks: {run['sample_errors']}" if run["sample_errors"] else "")
        )
    print(
        "\nconsistency proofs (ms): consistency_between for random old ≤ new ≤ newest, alternated with "
        "inclusion_proof at random indices, each in a fresh session"
    )
    print(
        f"{'database':<11}{'events':>10}{'insert':>8}{'1st ckpt':>9}{'n':>5}"
        f"{'consistency':>12}{'p95':>7}{'len':>4}{'inclusion':>10}{'p95':>7}{'len':>4}{'ratio':>6}"
    )
    for run in report["proofs"]:
        cons, incl = run["consistency"], run["inclusion"]
        print(
            f"{run['database']:<11}{run['events']:>10,}{run['insert_s']:>7.1f}s{run['first_checkpoint_s']:>8.1f}s"
            f"{cons['n']:>5}{cons['median_ms']:>12.2f}{cons['p95_ms']:>7.2f}{cons['length_max']:>4}"
            f"{incl['median_ms']:>10.2f}{incl['p95_ms']:>7.2f}{incl['length_max']:>4}"
            f"{run['consistency_over_inclusion']:>6.2f}"
        )
    print("  medians; len = the longest proof; ratio = consistency median ÷ inclusion median")
    print("\nwitness round trip (ms: median, p95): in-process rounds over httpx, then whole CLI runs")
    for run in report["witness"]:
        counts = {case: run["steps"][case].get("round", {}).get("n", 0) for case in CASES}
        print(
            f"{run['database']}: {run['rounds']} rounds; longest consistency proof in the body: "
            + ", ".join(f"{run['proof_lines_max'][case]} lines ({case})" for case in CASES)
        )
        print(f"  {'':<31}" + "".join(f"{f'{case} (n={counts[case]})':>24}" for case in CASES))
        for step in WITNESS_STEPS:
            cells = [run["steps"][case].get(step) for case in CASES]
            print(
                f"  {step:<31}"
                + "".join(
                    f"{cell['median_ms']:>15.2f}{cell['p95_ms']:>9.2f}" if cell else f"{'-':>24}"
                    for cell in cells
                )
            )
        rows = list(run["cli"].items())
        if run["wait_for_next_checkpoint"]:
            rows.append(("(idle wait for the next checkpoint)", run["wait_for_next_checkpoint"]))
        for what, figures in rows:
            print(f"  {what:<37}{figures['median_ms']:>9.2f}{figures['p95_ms']:>9.2f}   (n={figures['n']})")
        if run["cli"]:
            whole, floor = run["cli"][CLI_RUN]["median_ms"], run["cli"][CLI_HELP]["median_ms"]
            slowest = max(run["steps"][case]["round"]["median_ms"] for case in CASES if run["steps"][case])
            print(
                f"  a whole CLI run is {whole / slowest:.0f}× an in-process round and "
                f"{whole - floor:+.0f} ms from its --help floor: the rest is the interpreter and the imports"
            )
        else:
            print("  (whole CLI runs timed on the first database only: the client's cost is the same)")
    for note in report["notes"]:
        print(note)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the proof fixture")
    parser.add_argument(
        "--postgres-events", type=int, help="events of the PostgreSQL proof fixture (default: --events)"
    )
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=20, help="witness rounds per database")
    parser.add_argument("--proofs", type=int, default=200, help="proofs of each kind per database")
    parser.add_argument("--readers", type=int, default=4, help="caseworker threads reading tips")
    parser.add_argument("--submitters", type=int, default=2, help="threads submitting tips")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    args = parser.parse_args()
    args.database_names = [name.strip() for name in args.databases.split(",") if name.strip()]
    if set(args.database_names) - {"sqlite", "postgresql"}:
        parser.error("--databases takes sqlite and/or postgresql")
    if args.postgres_events is None:
        args.postgres_events = args.events
    return args


def main() -> int:
    args = parse_arguments()
    report: dict[str, Any] = {
        "checkpoint_delay": [],
        "witness": [],
        "proofs": [],
        "notes": [],
        "failures": [],
    }
    databases = list(args.database_names)
    if "postgresql" in databases and (unreachable := audit_bench.postgres_reachable()) is not None:
        databases.remove("postgresql")
        report["notes"].append(
            f"PostgreSQL skipped: {audit_bench.POSTGRES_URL} is unreachable ({unreachable})"
        )
    if "postgresql" in databases and args.postgres_events != args.events:
        report["notes"].append(f"PostgreSQL proofs over {args.postgres_events:,} events, not {args.events:,}")

    def attempt(what: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:  # reported, and the other measurements still run
            traceback.print_exc()
            said = str(exc).strip().splitlines() or [""]
            # A command's stderr ends in a traceback: its first line and its error say enough.
            error = next(
                (line for line in reversed(said) if re.match(r"^[\w.]+(Error|Exception)\b", line)), ""
            )
            report["failures"].append(f"{what}: {type(exc).__name__}: {said[0]} {error}".strip()[:500])

    with tempfile.TemporaryDirectory(prefix="daylight-witness-bench-") as scratch:
        for database in databases:

            def on_server(database: str = database) -> None:
                # The command's cost is its client's, whatever the database: timed on the first.
                cli_runs = CLI_RUNS if database == databases[0] else 0
                delay, witness = serve_and_measure(database, Path(scratch), args, cli_runs)
                report["checkpoint_delay"].append(delay)
                report["witness"].append(witness)
                if not delay["covered_after_stop"]:
                    report["failures"].append(f"{database}: events left unsigned after SIGTERM")

            attempt(f"{database} served", on_server)
    for database in databases:

        def proofs(database: str = database) -> None:
            count = args.events if database == "sqlite" else args.postgres_events
            report["proofs"].append(proof_timings(database, count, args.proofs))

        attempt(f"{database} proofs", proofs)

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_summary(report)
        for failure in report["failures"]:
            print(f"FAILED: {failure}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
