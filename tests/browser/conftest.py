"""Browser tests: Playwright driving the distribution's Chromium against a real `daylight serve`.

The browser is Debian's `/usr/bin/chromium` (`make test` installs it); these
tests never download one. Without it they fail rather than skip: a skipped
browser suite would let a broken no-JavaScript form ship unnoticed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import CHEAP_ARGON2
from tests.support.ports import free_ports

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    # Containers and CI runners have no user namespaces for the sandbox, and no GPU.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No calls home while a test runs: results must not depend on the network.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVE_START_SECONDS = 30


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium). "
            "Never run `playwright install`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def no_js_page(browser: Browser) -> Iterator[Page]:
    """A page as a Tor Browser user on "Safest" gets it: no JavaScript at all."""
    context = browser.new_context(java_script_enabled=False)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()


@dataclass(frozen=True)
class ServedDemo:
    data_dir: Path
    intake_url: str
    staff_url: str


def both_apps_healthy(served: ServedDemo) -> bool:
    try:
        return all(
            httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            for base in (served.intake_url, served.staff_url)
        )
    except httpx.TransportError:
        return False


@pytest.fixture
def served_demo(tmp_path: Path) -> Iterator[ServedDemo]:
    """`daylight demo` then `daylight serve` in a subprocess, on SQLite, on two free ports."""
    with serving_demo(tmp_path) as served:
        yield served


@pytest.fixture
def served_demo_500(tmp_path: Path) -> Iterator[ServedDemo]:
    """The demo at a caseworker's real volume: `daylight demo --reports 500`."""
    with serving_demo(tmp_path, reports=500) as served:
        yield served


@contextlib.contextmanager
def serving_demo(
    tmp_path: Path, *, reports: int = 3, environment: Mapping[str, str] | None = None
) -> Iterator[ServedDemo]:
    """``environment``: settings of the demo and its server (DAYLIGHT_* variables)."""
    env = {
        **os.environ,
        "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib),
        **(environment or {}),
    }
    env.pop("DAYLIGHT_DATABASE_URL", None)
    data_dir = tmp_path / "org"
    created = subprocess.run(
        [sys.executable, "-m", "app", "demo", "--data-dir", str(data_dir), "--reports", str(reports)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    intake_port, staff_port = free_ports(2)
    served = ServedDemo(data_dir, f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{staff_port}")
    # Output goes to a file, not a pipe: nobody reads a pipe while the tests
    # run, and a full pipe buffer would block the server mid-request.
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
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
        try:
            deadline = time.monotonic() + SERVE_START_SECONDS
            while not both_apps_healthy(served):
                assert process.poll() is None, f"daylight serve exited:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"daylight serve did not come up:\n{log_path.read_text()}"
                time.sleep(0.1)
            yield served
        finally:
            if process.poll() is None:
                process.terminate()
            try:
                process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate(timeout=10)
