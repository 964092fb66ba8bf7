"""The whole path over real HTTP: `daylight demo`, `daylight serve`, a tip in, a caseworker reads it.

Runs the installed command line in subprocesses, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pyotp
import pytest

from tests.conftest import CHEAP_ARGON2

pytestmark = pytest.mark.serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def daylight(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@dataclass
class Served:
    data_dir: Path
    intake: str
    staff: str
    process: subprocess.Popen[str]
    env: dict[str, str]


@pytest.fixture
def served(tmp_path: Path, committed_database_url: str | None) -> Iterator[Served]:
    env = {**os.environ,
           "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
           "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib)}
    env.pop("DAYLIGHT_DATABASE_URL", None)
    if committed_database_url:
        env["DAYLIGHT_DATABASE_URL"] = committed_database_url
    data_dir = tmp_path / "org"
    created = daylight("demo", "--data-dir", str(data_dir), env=env)
    assert created.returncode == 0, created.stderr
    intake_port, staff_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--data-dir", str(data_dir),
         "--intake-port", str(intake_port), "--staff-port", str(staff_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(data_dir, f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{staff_port}",
                    process, env)
    deadline = time.monotonic() + 30
    while True:
        try:
            if all(httpx.get(f"{base}/healthz").status_code == 200 for base in (served.intake, served.staff)):
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "daylight serve did not come up"
        time.sleep(0.1)
    try:
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=10)


def test_a_tip_submitted_over_http_is_read_by_the_demo_caseworker(served: Served) -> None:
    canary = f"CANARY-{secrets.token_hex(6)}"
    submitted = httpx.post(f"{served.intake}/api/v1/tips",
                           headers={"x-forwarded-for": "203.0.113.9", "user-agent": canary + "-agent"},
                           json={"narrative": f"{canary} they came to my shop", "language": "en",
                                 "tactics": ["station_contact"], "host_country": "IE",
                                 "host_city": "Dublin", "urgent": False})
    assert submitted.status_code == 201
    receipt = submitted.json()["receipt"]

    users = json.loads((served.data_dir / "demo-credentials.json").read_text())["users"]
    assert {u["role"] for u in users} == {"caseworker", "lead", "admin", "auditor"}
    assert all(set(u) == {"role", "username", "password", "totp_secret"} for u in users)
    caseworker = next(u for u in users if u["role"] == "caseworker")

    with httpx.Client(base_url=served.staff) as staff:
        login = staff.post("/api/v1/auth/login", json={
            "username": caseworker["username"], "password": caseworker["password"],
            "otp": pyotp.TOTP(caseworker["totp_secret"]).now()})
        assert login.status_code == 200, login.text
        items = staff.get("/api/v1/tips").json()["items"]
        assert len(items) >= 4  # three demo tips and ours
        narratives = [staff.get(f"/api/v1/tips/{item['id']}").json()["narrative"] for item in items]
        assert f"{canary} they came to my shop" in narratives

    followup = httpx.post(f"{served.intake}/api/v1/followup", json={"receipt": receipt})
    assert followup.json() == {"status": "new", "messages": []}

    page = httpx.get(f"{served.intake}/")
    assert page.status_code == 200
    assert "<script" not in page.text.lower()
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "server" not in page.headers
    assert httpx.get(f"{served.intake}/api/v1/tips").status_code == 405
    assert httpx.get(f"{served.intake}/openapi.json").status_code == 404

    served.process.terminate()
    output = served.process.communicate(timeout=10)[0]
    # No access log: no request line, no client address, nothing the submitter sent.
    for needle in ("127.0.0.1:", "203.0.113.9", canary, "POST /", "GET /"):
        assert needle not in output.replace(f"{served.intake}/", "").replace(f"{served.staff}/", ""), needle


def test_init_refuses_to_overwrite_an_organisation(served: Served) -> None:
    again = daylight("init", "--data-dir", str(served.data_dir), env=served.env)
    assert again.returncode != 0
    assert "already exists" in again.stderr
