"""Two `daylight serve` nodes on one PostgreSQL, as docs/deploy.md describes: a staff session opened
on one works on the other, a report sent to one is followed up (and its file read) on the other, and
the purge and the audit checkpoints, run by both, happen once.

PostgreSQL only, by design: several app nodes need it (SQLite is one process's file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pyotp
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import CHEAP_ARGON2, create_postgres_schema, drop_postgres_schema
from tests.support.ports import free_ports


@dataclass(frozen=True)
class Node:
    data_dir: Path
    intake: str
    staff: str
    log: Path


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[Node, Node]
    database_url: str
    env: dict[str, str]


def healthy(node: Node) -> bool:
    try:
        return all(
            httpx.get(f"{base}/healthz", timeout=2).status_code == 200 for base in (node.intake, node.staff)
        )
    except httpx.TransportError:
        return False


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    schema, url = create_postgres_schema("daylight_nodes")
    env = {
        **os.environ,
        "DAYLIGHT_DATABASE_URL": url,
        "DAYLIGHT_BLOB_STORAGE": "database",
        "DAYLIGHT_AUDIT_CHECKPOINT_DELAY_SECONDS": "0.5",
        "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib),
    }
    first, second = tmp_path / "node-a", tmp_path / "node-b"
    subprocess.run(
        [sys.executable, "-m", "app", "demo", "--data-dir", str(first)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    # A second node: its own data dir, the same secrets and settings (docs/deploy.md).
    second.mkdir(mode=0o700)
    shutil.copytree(first / "secrets", second / "secrets")
    shutil.copy2(first / "daylight.env", second / "daylight.env")
    nodes, processes, sinks = [], [], []
    try:
        for data_dir in (first, second):
            intake_port, staff_port = free_ports(2)
            log = data_dir / "serve.log"
            sink = log.open("w")
            sinks.append(sink)
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "app",
                        "serve",
                        "--data-dir",
                        str(data_dir),
                        "--intake-port",
                        str(intake_port),
                        "--staff-port",
                        str(staff_port),
                    ],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            )
            nodes.append(
                Node(data_dir, f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{staff_port}", log)
            )
        deadline = time.monotonic() + 30
        while not all(healthy(node) for node in nodes):
            assert time.monotonic() < deadline, "".join(node.log.read_text() for node in nodes)
            time.sleep(0.2)
        yield Cluster((nodes[0], nodes[1]), url, env)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
        for sink in sinks:
            sink.close()
        drop_postgres_schema(schema)


def test_two_nodes_share_sessions_reports_files_and_run_jobs_once(cluster: Cluster) -> None:
    node_a, node_b = cluster.nodes
    caseworker = next(
        user
        for user in json.loads((node_a.data_dir / "demo-credentials.json").read_text())["users"]
        if user["role"] == "caseworker"
    )

    # A report with a file, sent to node A; followed up on node B.
    evidence = os.urandom(3_000_000)
    sent = httpx.post(
        f"{node_a.intake}/api/v1/tips",
        data={"narrative": "Sent to node A."},
        files=[("files", ("letter.bin", evidence, "application/octet-stream"))],
        timeout=60,
    )
    assert sent.status_code == 201
    receipt = sent.json()["receipt"]
    assert httpx.post(f"{node_b.intake}/api/v1/followup", json={"receipt": receipt}).json()["status"] == "new"
    assert (
        httpx.post(
            f"{node_b.intake}/api/v1/followup/messages",
            json={"receipt": receipt, "body": "Answered through node B."},
        ).status_code
        == 201
    )

    # A staff session opened on node A works on node B, where the file reads back whole.
    with httpx.Client() as staff:
        assert (
            staff.post(
                f"{node_a.staff}/api/v1/auth/login",
                json={
                    "username": caseworker["username"],
                    "password": caseworker["password"],
                    "otp": pyotp.TOTP(caseworker["totp_secret"]).now(),
                },
            ).status_code
            == 200
        )
        assert staff.get(f"{node_b.staff}/api/v1/auth/session").status_code == 200
        items = staff.get(f"{node_b.staff}/api/v1/tips").json()["items"]
        tip = next(
            detail
            for item in items
            if (detail := staff.get(f"{node_b.staff}/api/v1/tips/{item['id']}").json())["narrative"]
            == "Sent to node A."
        )
        [attachment] = tip["attachments"]
        download = staff.get(
            f"{node_b.staff}/api/v1/tips/{tip['id']}/attachments/{attachment['id']}", timeout=60
        )
        assert download.content == evidence
        assert [message["body"] for message in tip["messages"]] == ["Answered through node B."]

    # Both nodes sign checkpoints every second: the log still verifies, with no failure logged.
    time.sleep(3)
    for node in (node_a, node_b):
        verify = subprocess.run(
            [sys.executable, "-m", "app", "audit", "verify", "--data-dir", str(node.data_dir)],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert verify.returncode == 0, verify.stderr
        assert "audit checkpoint failed" not in node.log.read_text()

    # The purge, started on both nodes at once, purges an expired report once.
    engine = create_engine(cluster.database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "UPDATE tips SET status = 'rejected', rejection_reason = 'spam', "
                "last_activity_on = '2020-01-01' WHERE id = :id"
            ),
            {"id": tip["id"]},
        )
    purges = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "purge", "--data-dir", str(node.data_dir)],
            env=cluster.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for node in (node_a, node_b)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in purges]
    assert sum("purged 1 tips" in output for output in outputs) == 1, outputs
    with engine.begin() as connection:
        assert (
            connection.execute(text("SELECT count(*) FROM audit_events WHERE action = 'tip.purge'")).scalar()
            == 1
        )
        assert connection.execute(text("SELECT count(*) FROM blob_chunks")).scalar() == 0
    engine.dispose()
