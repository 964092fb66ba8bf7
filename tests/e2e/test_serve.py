"""The whole path over real HTTP: `daylight demo`, `daylight serve`, a tip in, a caseworker reads it.

Runs the installed command line in subprocesses, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pyotp
import pytest

from tests.conftest import CHEAP_ARGON2
from tests.support.ports import free_ports

pytestmark = pytest.mark.serve


def daylight(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class Served:
    data_dir: Path
    intake: str
    staff: str
    process: subprocess.Popen[str]
    env: dict[str, str]
    log_path: Path


IDLE_TIMEOUT_SECONDS = 2


@pytest.fixture
def served(tmp_path: Path, committed_database_url: str | None) -> Iterator[Served]:
    env = {
        **os.environ,
        "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib),
        "DAYLIGHT_REQUEST_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT_SECONDS),
    }
    env.pop("DAYLIGHT_DATABASE_URL", None)
    if committed_database_url:
        env["DAYLIGHT_DATABASE_URL"] = committed_database_url
    data_dir = tmp_path / "org"
    created = daylight("demo", "--data-dir", str(data_dir), env=env)
    assert created.returncode == 0, created.stderr
    intake_port, staff_port = free_ports(2)
    # Output goes to a file, not a pipe: nobody reads a pipe while the tests run, and a
    # full pipe buffer would block the server mid-request (a hang, not a failure).
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    process = subprocess.Popen(
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
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(
        data_dir, f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{staff_port}", process, env, log_path
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if all(httpx.get(f"{base}/healthz").status_code == 200 for base in (served.intake, served.staff)):
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, "daylight serve did not come up"
        time.sleep(0.1)
    try:
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=10)
        log.close()


def test_a_tip_submitted_over_http_is_read_by_the_demo_caseworker(served: Served) -> None:
    canary = f"CANARY-{secrets.token_hex(6)}"
    submitted = httpx.post(
        f"{served.intake}/api/v1/tips",
        headers={"x-forwarded-for": "203.0.113.9", "user-agent": canary + "-agent"},
        json={
            "narrative": f"{canary} they came to my shop",
            "language": "en",
            "tactics": ["station_contact"],
            "host_country": "IE",
            "host_city": "Dublin",
            "urgent": False,
        },
    )
    assert submitted.status_code == 201
    receipt = submitted.json()["receipt"]

    users = json.loads((served.data_dir / "demo-credentials.json").read_text())["users"]
    assert {u["role"] for u in users} == {"caseworker", "lead", "admin", "auditor"}
    assert all(set(u) == {"role", "username", "password", "totp_secret"} for u in users)
    caseworker = next(u for u in users if u["role"] == "caseworker")

    with httpx.Client(base_url=served.staff) as staff:
        login = staff.post(
            "/api/v1/auth/login",
            json={
                "username": caseworker["username"],
                "password": caseworker["password"],
                "otp": pyotp.TOTP(caseworker["totp_secret"]).now(),
            },
        )
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
    served.process.communicate(timeout=10)
    output = served.log_path.read_text()
    # No access log: no request line, no client address, nothing the submitter sent.
    for needle in ("127.0.0.1:", "203.0.113.9", canary, "POST /", "GET /"):
        assert needle not in output.replace(f"{served.intake}/", "").replace(f"{served.staff}/", ""), needle


def test_init_refuses_to_overwrite_an_organisation(served: Served) -> None:
    again = daylight("init", "--data-dir", str(served.data_dir), env=served.env)
    assert again.returncode != 0
    assert "already exists" in again.stderr


def demo_user(served: Served, role: str) -> dict[str, str]:
    users = json.loads((served.data_dir / "demo-credentials.json").read_text())["users"]
    user: dict[str, str] = next(u for u in users if u["role"] == role)
    return user


def staff_login(served: Served, role: str, client: httpx.Client) -> None:
    user = demo_user(served, role)
    response = client.post(
        "/api/v1/auth/login",
        json={
            "username": user["username"],
            "password": user["password"],
            "otp": pyotp.TOTP(user["totp_secret"]).now(),
        },
    )
    assert response.status_code == 200, response.text


def test_concurrent_requests_all_succeed(served: Served) -> None:
    """Overlapping writes and reads, on SQLite as on PostgreSQL: no "database is locked"."""
    with httpx.Client(base_url=served.staff) as staff:
        staff_login(served, "lead", staff)
        tip_id = staff.get("/api/v1/tips").json()["items"][0]["id"]

        def submit(i: int) -> int:
            files = [("files", (f"{i}.bin", os.urandom(300_000), "application/octet-stream"))]
            return httpx.post(
                f"{served.intake}/api/v1/tips", data={"narrative": f"tip {i}"}, files=files, timeout=60
            ).status_code

        def read(_: int) -> int:
            return staff.get(f"/api/v1/tips/{tip_id}", timeout=60).status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            submissions = list(pool.map(submit, range(12)))
            reads = list(pool.map(read, range(12)))
    assert submissions == [201] * 12
    assert reads == [200] * 12


def test_stalled_uploads_neither_block_others_nor_live_forever(served: Served) -> None:
    stalled = []
    port = int(served.intake.rsplit(":", 1)[1])
    for _ in range(20):  # more than the connection pool and the upload slots
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /api/v1/tips HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=B\r\n"
            b"Content-Length: 100000000\r\n\r\n--B\r\n"
            b'Content-Disposition: form-data; name="files"; filename="a"\r\n\r\n' + b"x" * 1000
        )
        stalled.append(sock)
    try:
        started = time.monotonic()
        assert (
            httpx.post(
                f"{served.intake}/api/v1/tips", json={"narrative": "still open"}, timeout=10
            ).status_code
            == 201
        )
        with httpx.Client(base_url=served.staff) as staff:
            staff_login(served, "caseworker", staff)
        assert time.monotonic() - started < IDLE_TIMEOUT_SECONDS * 3
        stalled[0].settimeout(IDLE_TIMEOUT_SECONDS * 5)
        answer = stalled[0].recv(4096)
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line in (b"HTTP/1.1 408 Request Timeout", b"HTTP/1.1 503 Service Unavailable")
    finally:
        for sock in stalled:
            sock.close()
    # Nothing of the stalled uploads is kept once their connections are gone.
    blobs_dir = served.data_dir / "blobs"
    with httpx.Client(base_url=served.staff) as staff:
        staff_login(served, "lead", staff)
        stored = sum(item["attachment_count"] for item in staff.get("/api/v1/tips").json()["items"])
    deadline = time.monotonic() + IDLE_TIMEOUT_SECONDS * 5
    while len(list(blobs_dir.iterdir())) != stored and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(blobs_dir.iterdir())) == stored


def test_one_code_logs_in_once_even_when_sent_concurrently(served: Served) -> None:
    user = demo_user(served, "caseworker")
    code = pyotp.TOTP(user["totp_secret"]).now()

    def attempt(_: int) -> int:
        return httpx.post(
            f"{served.staff}/api/v1/auth/login",
            timeout=30,
            json={"username": user["username"], "password": user["password"], "otp": code},
        ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = sorted(pool.map(attempt, range(6)))
    assert results == [200] + [401] * 5


def test_pages_that_reflect_a_receipt_are_never_compressed_and_name_no_server(served: Served) -> None:
    """BREACH: a compressed page that reflects a secret (the receipt) next to text an attacker
    can inject leaks the secret through the response size. Nothing here compresses."""
    headers = {"accept-encoding": "gzip, deflate, br, zstd"}
    receipt_page = httpx.post(
        f"{served.intake}/report", headers=headers, data={"narrative": "A compressible narrative. " * 200}
    )
    assert receipt_page.status_code == 201
    followup = httpx.get(f"{served.intake}/followup", headers=headers)
    login_page = httpx.get(f"{served.staff}/login", headers=headers)
    for response in (receipt_page, followup, login_page):
        assert "content-encoding" not in response.headers
        assert "server" not in response.headers
    # The submitter's pages set no cookie at all; the login page only its pre-login token.
    assert "set-cookie" not in receipt_page.headers
    assert "set-cookie" not in followup.headers
    [login_cookie] = login_page.headers.get_list("set-cookie")
    assert login_cookie.startswith("daylight_login=")
    assert "httponly" in login_cookie.lower()
    assert "samesite=strict" in login_cookie.lower()


def test_canaries_sent_through_every_kind_of_route_never_reach_the_log(served: Served) -> None:
    canary = f"CANARY{secrets.token_hex(6)}"
    headers = {
        "x-forwarded-for": "203.0.113.77",
        "user-agent": f"{canary}-agent",
        "x-real-ip": "203.0.113.78",
    }
    intake = httpx.Client(base_url=served.intake, headers=headers)
    staff = httpx.Client(base_url=served.staff, headers=headers)
    with intake, staff:
        intake.get("/")
        intake.post(
            "/report/step", data={"step": "story", "go": "next", "narrative": canary, "host_city": canary}
        )
        intake.post("/report", data={"narrative": canary, "host_country": "ZZ", "contact_details": canary})
        sent = intake.post("/api/v1/tips", json={"narrative": canary, "host_city": canary})
        receipt = sent.json()["receipt"]
        intake.post("/api/v1/followup", json={"receipt": canary})
        intake.post("/api/v1/followup/messages", json={"receipt": receipt, "body": canary})
        intake.post("/followup", data={"receipt": canary})
        intake.post("/followup/reply", data={"receipt": receipt, "body": canary})
        intake.post(
            "/followup/files",
            data={"receipt": receipt},
            files=[("files", (f"{canary}.pdf", canary.encode(), "application/pdf"))],
        )
        intake.post(
            "/api/v1/tips",
            content=b'{"narrative": "' + canary.encode() + b'"',
            headers={"content-type": "application/json"},
        )
        staff.post("/api/v1/auth/login", json={"username": canary, "password": canary, "otp": "000000"})
        token = re.search(r'name="login_token" value="([^"]+)"', staff.get("/login").text)
        assert token
        staff.post(
            "/login",
            data={"login_token": token.group(1), "username": canary, "password": canary, "otp": "123456"},
        )
        staff_login(served, "lead", staff)
        tip_id = staff.get("/api/v1/tips").json()["items"][0]["id"]
        staff.get(f"/api/v1/tips/{tip_id}")
        staff.post(f"/api/v1/tips/{tip_id}/notes", json={"body": canary})
        staff.post(f"/api/v1/tips/{tip_id}/messages", json={"body": canary, "question": True})
        staff.post("/api/v1/cases", json={"title": canary, "tip_ids": [tip_id]})
        staff.post(
            "/api/v1/stations/import",
            content=f"city,country\n{canary},QQ\n".encode(),
            headers={"content-type": "text/csv"},
        )
        staff.get(f"/api/v1/tips?cursor={canary}")
    served.process.terminate()
    served.process.communicate(timeout=10)
    log = served.log_path.read_text()
    for needle in (canary, receipt, "203.0.113.77", "203.0.113.78"):
        assert needle not in log, needle
    for line in log.splitlines():
        if line.startswith("{"):
            assert json.loads(line)["level"] in ("debug", "info", "warning", "error", "critical")
        else:
            assert line.startswith("Intake app on http://"), line
