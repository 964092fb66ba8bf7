"""Time the foundation's two hot paths against a real `daylight serve`, side by side with /healthz.

    make bench        (or: .venv/bin/python bench/http_paths.py [--rounds N])

Starts a throwaway demo organisation with the production Argon2id cost, then
alternates requests so that machine noise hits every series alike, and prints
medians and their ratio to a /healthz round trip measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx2 as httpx
import pyotp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def timed(call: Callable[[], httpx.Response], expected: int) -> float:
    start = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - start
    assert response.status_code == expected, response.text
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYLIGHT_")}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "org"
        subprocess.run(
            [sys.executable, "-m", "app", "demo", "--data-dir", str(data_dir)],
            env=env,
            check=True,
            capture_output=True,
        )
        intake_port, staff_port = free_port(), free_port()
        server = subprocess.Popen(
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
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            intake = httpx.Client(base_url=f"http://127.0.0.1:{intake_port}")
            staff = httpx.Client(base_url=f"http://127.0.0.1:{staff_port}")
            for _ in range(100):
                try:
                    if intake.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            users = json.loads((data_dir / "demo-credentials.json").read_text())["users"]
            tip = {
                "narrative": "benchmark " * 200,
                "language": "en",
                "tactics": ["surveillance"],
                "host_country": "NL",
                "host_city": "Rotterdam",
                "urgent": False,
            }
            login_series = "staff login (Argon2id t=3, 64 MiB)"
            series: dict[str, list[float]] = {"healthz": [], "submit tip (JSON)": [], login_series: []}
            receipt = intake.post("/api/v1/tips", json=tip).json()["receipt"]
            unknown = "0000-0000-0000-0000-0000-0000"
            # A duress code must cost what its report's receipt costs: the page it opens claims to
            # be that of a report with no replies, as this one is (app.intake.duress).
            duress_page = intake.post("/followup/duress", data={"receipt": receipt}).text
            duress_code = "-".join(
                re.findall(r'<span class="receipt-group">([0-9A-Z]{4})</span>', duress_page)
            )
            series["followup, valid receipt"] = []
            series["followup, duress code"] = []
            series["followup, unknown receipt"] = []
            for _ in range(args.rounds):
                series["healthz"].append(timed(lambda: intake.get("/healthz"), 200))
                series["submit tip (JSON)"].append(timed(lambda: intake.post("/api/v1/tips", json=tip), 201))
                series["followup, valid receipt"].append(
                    timed(lambda: intake.post("/api/v1/followup", json={"receipt": receipt}), 200)
                )
                series["followup, duress code"].append(
                    timed(lambda: intake.post("/api/v1/followup", json={"receipt": duress_code}), 200)
                )
                series["followup, unknown receipt"].append(
                    timed(lambda: intake.post("/api/v1/followup", json={"receipt": unknown}), 401)
                )
            # A one-time code is accepted once, and only for a later step than the last:
            # each account logs in with the codes of steps -1, 0 and +1, in that order.
            while time.time() % 30 > 20:
                time.sleep(0.5)
            now = time.time()
            for offset in (-1, 0, 1):
                for user in users:
                    login = {
                        "username": user["username"],
                        "password": user["password"],
                        "otp": pyotp.TOTP(user["totp_secret"]).at(now + 30 * offset),
                    }
                    series["healthz"].append(timed(lambda: intake.get("/healthz"), 200))
                    series[login_series].append(
                        timed(lambda login=login: staff.post("/api/v1/auth/login", json=login), 200)
                    )
        finally:
            server.terminate()
            server.wait(timeout=10)
    baseline = statistics.median(series["healthz"])
    print(f"{'path':<38} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'× healthz':>10}")
    for name, values in series.items():
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
        median = statistics.median(values)
        print(
            f"{name:<38} {len(values):>4} {median * 1000:>10.2f} {p90 * 1000:>8.2f} "
            f"{median / baseline:>10.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
