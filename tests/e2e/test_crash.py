"""kill -9 during submissions, several times: no acknowledged receipt is lost, no blob of a committed
attachment is lost, and the next start sweeps what the killed uploads left behind.

Runs the installed command line in subprocesses, on SQLite and on PostgreSQL, with blobs in the
data dir. The server is started in a session of its own and killed as a process group, so intake
workers in child processes die with it, as they would in a crash of the host.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx2 as httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from app.intake.models import TipAttachment
from app.intake.orphans import find_orphan_blobs
from app.kit.config import Settings
from app.kit.db import Database
from tests.conftest import CHEAP_ARGON2
from tests.e2e.test_serve import daylight
from tests.support.ports import free_ports

pytestmark = pytest.mark.serve

KILLS = 3
SUBMITTERS = 4
LOAD_SECONDS = 0.8
INTAKE_WORKERS = 2
# Longer than any `older_than` a startup sweep would sensibly use: the blobs left by the kills
# are made to look this old, as they would be by the time a real server is started again.
AGED = dt.timedelta(days=7)


def running_in_group(group: int) -> list[int]:
    """Processes of the group that are not zombies (a zombie holds no port and runs nothing)."""
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == group and fields[0] != "Z":
            running.append(int(stat.parent.name))
    return running


@dataclass
class Node:
    """One data dir and its two ports, served by a process that is killed and started again."""

    data_dir: Path
    env: dict[str, str]
    database_url: str | None
    log: IO[str]
    intake_port: int = 0
    staff_port: int = 0
    process: subprocess.Popen[str] | None = None

    def __post_init__(self) -> None:
        if not self.intake_port:
            self.intake_port, self.staff_port = free_ports(2)

    @property
    def intake(self) -> str:
        return f"http://127.0.0.1:{self.intake_port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--intake-port",
                str(self.intake_port),
                "--staff-port",
                str(self.staff_port),
                # Several intake processes, as in production: the kill must take every one of them.
                "--intake-workers",
                str(INTAKE_WORKERS),
                "--staff-workers",
                "1",
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.intake}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, Path(self.log.name).read_text()
            assert time.monotonic() < deadline, "daylight serve did not come up"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the whole process group: no cleanup handler, no rollback, anywhere."""
        assert self.process is not None
        group = self.process.pid  # start_new_session: the server leads its own group
        os.killpg(group, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None
        # The workers are not our children (init reaps them): wait until none of them still runs.
        deadline = time.monotonic() + 10
        while running_in_group(group):
            assert time.monotonic() < deadline, "a server process outlived SIGKILL to its group"
            time.sleep(0.02)

    def settings(self) -> Settings:
        return Settings(
            data_dir=self.data_dir,
            argon2=CHEAP_ARGON2,
            database_url=SecretStr(self.database_url) if self.database_url else None,
        )


@pytest.fixture
def node(tmp_path: Path, committed_database_url: str | None) -> Iterator[Node]:
    env = {
        **os.environ,
        "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib),
    }
    env.pop("DAYLIGHT_DATABASE_URL", None)
    env.pop("DAYLIGHT_BLOB_STORAGE", None)
    if committed_database_url:
        env["DAYLIGHT_DATABASE_URL"] = committed_database_url
    data_dir = tmp_path / "org"
    created = daylight("demo", "--data-dir", str(data_dir), env=env)
    assert created.returncode == 0, created.stderr
    with (tmp_path / "serve.log").open("a") as log:
        served = Node(data_dir, env, committed_database_url, log)
        try:
            yield served
        finally:
            if served.process is not None:
                served.kill()


def submit_until(stop: threading.Event, node: Node, worker: int, receipts: list[str]) -> None:
    """Alternate JSON and multipart tips; keep the receipt of every 201 that arrived whole."""
    with httpx.Client(base_url=node.intake, timeout=10) as client:
        sent = 0
        while not stop.is_set():
            sent += 1
            narrative = f"crash test {worker}/{sent}"
            try:
                if sent % 2:
                    response = client.post("/api/v1/tips", json={"narrative": narrative})
                else:
                    evidence = ("e.bin", os.urandom(200_000), "application/pdf")
                    response = client.post(
                        "/api/v1/tips", data={"narrative": narrative}, files=[("files", evidence)]
                    )
                if response.status_code == 201:
                    receipts.append(response.json()["receipt"])
            except (httpx.TransportError, ValueError):
                time.sleep(0.05)  # the server is down (killed) or the answer was cut short


def start_a_stalled_upload(node: Node) -> socket.socket:
    """An upload certainly in flight at the kill: its blob exists and no row will ever name it."""
    sock = socket.create_connection(("127.0.0.1", node.intake_port))
    sock.sendall(
        b"POST /api/v1/tips HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\n"
        b"Content-Length: 10000000\r\n\r\n--B\r\n"
        b'Content-Disposition: form-data; name="files"; filename="a"\r\n\r\n' + os.urandom(100_000)
    )
    return sock


def blob_files(node: Node) -> set[str]:
    blobs_dir = node.data_dir / "blobs"
    return {path.name for path in blobs_dir.iterdir()} if blobs_dir.exists() else set()


def attachment_blob_names(database: Database) -> set[str]:
    with database.transaction() as session:
        return {blob_id.hex for blob_id in session.scalars(select(TipAttachment.id))}


def test_kill_9_mid_submission_loses_no_receipt_and_the_next_start_sweeps_the_orphans(node: Node) -> None:
    receipts: list[str] = []
    node.start()
    for kill in range(KILLS):
        if kill:
            node.start()
        stop = threading.Event()
        stalled = start_a_stalled_upload(node)
        with ThreadPoolExecutor(max_workers=SUBMITTERS) as pool:
            for worker in range(SUBMITTERS):
                pool.submit(submit_until, stop, node, worker, receipts)
            time.sleep(LOAD_SECONDS)
            node.kill()  # while submissions stream in
            stop.set()
        stalled.close()
    assert len(receipts) >= KILLS * SUBMITTERS, "too few tips went through to test anything"

    settings = node.settings()
    database = Database.from_settings(settings)
    try:
        left_behind = len(find_orphan_blobs(settings, database, older_than=dt.timedelta(0)))
        assert left_behind >= 1, "no kill caught an upload in flight: the test simulated no crash"
        # Every committed attachment's file survived the kills (fsynced before its row committed).
        named = attachment_blob_names(database)
        assert named <= blob_files(node)

        # Time passes beyond the longest upload; the next start sweeps what the kills left.
        aged = (dt.datetime.now(dt.UTC) - AGED).timestamp()
        for name in blob_files(node):
            os.utime(node.data_dir / "blobs" / name, (aged, aged))
        node.start()
        assert len(find_orphan_blobs(settings, database, older_than=dt.timedelta(0))) == 0, (
            f"{left_behind} orphan blobs were left by the kills and the start did not sweep them "
            "(is sweep_orphan_blobs wired into `daylight serve`?)"
        )
        assert blob_files(node) == named
    finally:
        database.engine.dispose()

    with httpx.Client(base_url=node.intake, timeout=30) as client, ThreadPoolExecutor(INTAKE_WORKERS) as pool:
        opened = list(
            pool.map(
                lambda receipt: client.post("/api/v1/followup", json={"receipt": receipt}).status_code,
                receipts,
            )
        )
    assert opened == [200] * len(receipts), f"{opened.count(200)} of {len(receipts)} receipts open"
