"""Time and size `daylight keys rotate`, side by side with the intake work it undoes, in one run.

    make bench        (or: .venv/bin/python bench/key_rotation.py [--tips N])

On SQLite and, when reachable, PostgreSQL (a throwaway schema on
postgresql+psycopg://postgres@127.0.0.1:5432/test, or DAYLIGHT_TEST_POSTGRES_URL):

* ``--tips`` reports are submitted through the intake service (real sealing, one transaction per
  report, as the service commits each submission), then the whole rotation runs
  (`app.keys.rotation.run`: start, batches, finish, scrub).
  The figure that matters is the ratio: re-sealing one report's data key against submitting it.
* memory: a second rotation of the same reports, and one of a tenth as many in a fresh
  organisation, under ``tracemalloc``; rotation works in batches, so its peak should not grow
  with the number of reports.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.orm import sessionmaker

from app.audit_log import events as audit
from app.crypto import sealing
from app.entrypoints.organisation import init_organisation
from app.intake import service as intake_service
from app.intake.schemas import TipSubmission
from app.keys import rotation
from app.kit.config import Settings
from app.kit.db import Database, create_database_engine
from app.kit.server_secrets import load_server_secrets

POSTGRES_URL = os.environ.get(
    "DAYLIGHT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextmanager
def organisation_database(backend: str, data_dir: Path) -> Iterator[Database | None]:
    """A database for a new organisation: a SQLite file, or a throwaway PostgreSQL schema."""
    if backend == "sqlite":
        settings = Settings(data_dir=data_dir)
        database = Database.from_settings(settings)
        try:
            yield database
        finally:
            database.engine.dispose()
        return
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    schema = f"daylight_bench_rotation_{secrets.token_hex(4)}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # no PostgreSQL: say so, do not fail the other benchmarks
        print(f"rotation benchmark on PostgreSQL skipped: unreachable ({type(exc).__name__})")
        admin.dispose()
        yield None
        return
    separator = "&" if "?" in POSTGRES_URL else "?"
    engine = create_database_engine(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    try:
        yield Database(engine, sessionmaker(engine, expire_on_commit=False))
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def new_organisation(
    database: Database, data_dir: Path, tips: int
) -> tuple[dict[int, sealing.PrivateKey], bytes, float]:
    """An organisation with ``tips`` reports; returns its unlocked key, key-integrity key and the
    seconds the submissions took."""
    settings = Settings(data_dir=data_dir)
    created = init_organisation(settings, database)
    server_secrets = load_server_secrets(settings.secrets_dir)
    submission = TipSubmission.model_validate(
        {"narrative": "A report for the benchmark. " * 20, "tactics": ["surveillance"], "host_city": "Dublin"}
    )
    started = time.perf_counter()
    for _ in range(tips):
        with database.transaction() as session:
            intake_service.finish_tip(session, intake_service.start_tip(session, server_secrets), submission)
    elapsed = time.perf_counter() - started
    return {created.intake_key.version: created.intake_private}, server_secrets.key_integrity_key, elapsed


def rotate(
    database: Database, unlocked: dict[int, sealing.PrivateKey], key_integrity_key: bytes
) -> tuple[dict[int, sealing.PrivateKey], float]:
    opened: list[rotation.Rotation] = []
    started = time.perf_counter()
    rotation.run(
        database, unlocked, audit.SYSTEM, key_integrity_key=key_integrity_key, on_started=opened.append
    )
    elapsed = time.perf_counter() - started
    return {opened[0].to_version: opened[0].new_private}, elapsed


def peak_mib_of_rotation(database: Database, unlocked: dict[int, sealing.PrivateKey], key: bytes) -> float:
    tracemalloc.start()
    try:
        rotate(database, unlocked, key)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def bench_backend(backend: str, tips: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        with organisation_database(backend, Path(scratch) / "large") as database:
            if database is None:
                return
            unlocked, integrity_key, submit_seconds = new_organisation(
                database, Path(scratch) / "large", tips
            )
            unlocked, rotate_seconds = rotate(database, unlocked, integrity_key)
            peak_large = peak_mib_of_rotation(database, unlocked, integrity_key)
        small_tips = max(tips // 10, 1)
        with organisation_database(backend, Path(scratch) / "small") as database:
            assert database is not None
            unlocked, integrity_key, _ = new_organisation(database, Path(scratch) / "small", small_tips)
            peak_small = peak_mib_of_rotation(database, unlocked, integrity_key)
    per_submit = submit_seconds / tips * 1e3
    per_rotate = rotate_seconds / tips * 1e3
    print(f"{backend}: {tips:,} reports")
    print(f"  submit (intake service)      {per_submit:7.3f} ms per report   ({submit_seconds:6.1f} s)")
    print(
        f"  rotate (whole run)           {per_rotate:7.3f} ms per report   ({rotate_seconds:6.1f} s)"
        f"   ratio rotate/submit {per_rotate / per_submit:.2f}"
    )
    print(
        f"  rotation peak memory (traced) {peak_large:6.1f} MiB for {tips:,} reports, {peak_small:6.1f} MiB "
        f"for {small_tips:,}   ratio {peak_large / peak_small:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tips", type=int, default=5000)
    args = parser.parse_args()
    for backend in ("sqlite", "postgresql"):
        bench_backend(backend, args.tips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
