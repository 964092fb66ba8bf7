"""The README's two commands, run as a newcomer runs them: in a fresh `git clone` of this repository.

`make run` on two free ports builds the clone's own .venv, creates the demo and serves it; both
apps answer, and SIGTERM to the process group stops everything it started. `make -n test` shows
that `make test` still does all of its set-up: lint, then the Debian packages, then pytest.

The clone holds committed work only (in CI: a clean clone of main). Nothing here touches this
checkout: the clone, its .venv and the demo's data dir all live in the test's tmp dir.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import CHEAP_ARGON2
from tests.support.ports import free_ports

pytestmark = pytest.mark.serve

REPO = Path(__file__).resolve().parents[2]
# A fresh .venv, the demo, then the workers' start: about a minute and a half on two busy cores;
# the bound is for a slow machine, not the expected time.
MAKE_RUN_SECONDS = 240
STOP_SECONDS = 30
FROM_THIS_CHECKOUT = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "DAYLIGHT_DATABASE_URL",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
)


def newcomer_env() -> dict[str, str]:
    """This process's environment without what running inside this checkout adds to it: its
    .venv, a database URL, and the flags of an outer `make test` (MAKEFLAGS carries PYTEST_ARGS)."""
    env = {name: value for name, value in os.environ.items() if name not in FROM_THIS_CHECKOUT}
    outer_bin = str(REPO / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part != outer_bin)
    # Cheap password hashing for the demo accounts: a setting, not a change to the commands.
    env["DAYLIGHT_ARGON2__TIME_COST"] = str(CHEAP_ARGON2.time_cost)
    env["DAYLIGHT_ARGON2__MEMORY_COST_KIB"] = str(CHEAP_ARGON2.memory_cost_kib)
    return env


def group_members(pgid: int) -> list[str]:
    """Live (not zombie) processes in the process group, as "pid command"."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(f"{entry.name} {command.strip()}")
    return members


def both_healthy(intake: str, staff: str) -> bool:
    try:
        return all(httpx.get(f"{base}/healthz", timeout=2).status_code == 200 for base in (intake, staff))
    except httpx.TransportError:
        return False


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "daylight"
    cloned = subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cloned.returncode == 0, cloned.stderr
    return target


def test_make_run_serves_the_demo_on_the_ports_it_is_given_and_stops_cleanly(
    clone: Path, tmp_path: Path
) -> None:
    intake_port, staff_port = free_ports(2)
    intake, staff = f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{staff_port}"
    data_dir = tmp_path / "demo"
    log_path = tmp_path / "make-run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["make", "run", f"INTAKE_PORT={intake_port}", f"STAFF_PORT={staff_port}", f"DATA_DIR={data_dir}"],
            cwd=clone,
            env=newcomer_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make, serve and every worker
        )
    pgid = process.pid
    try:
        deadline = time.monotonic() + MAKE_RUN_SECONDS
        while not both_healthy(intake, staff):
            assert process.poll() is None, f"make run exited ({process.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"make run did not come up:\n{log_path.read_text()}"
            time.sleep(0.5)
        form = httpx.get(f"{intake}/", timeout=10)
        assert form.status_code == 200
        assert "<form" in form.text
        assert httpx.get(f"{staff}/login", timeout=10).status_code == 200
        assert (data_dir / "demo-credentials.json").exists()

        os.killpg(pgid, signal.SIGTERM)
        process.wait(timeout=STOP_SECONDS)
        deadline = time.monotonic() + STOP_SECONDS
        while left := group_members(pgid):
            assert time.monotonic() < deadline, f"left running after SIGTERM: {left}\n{log_path.read_text()}"
            time.sleep(0.2)
        assert not both_healthy(intake, staff)
    finally:
        if group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=STOP_SECONDS)

    # The clone's own environment, and nothing of this checkout's.
    assert (clone / ".venv" / ".installed-stamp").exists()
    assert not (clone / "var").exists()


def test_make_test_sets_up_then_lints_then_installs_system_packages_then_runs_pytest(clone: Path) -> None:
    dry_run = subprocess.run(
        ["make", "-n", "test"],
        cwd=clone,
        env=newcomer_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    lines = dry_run.stdout.splitlines()
    # Each step on a line after the one before it.
    steps = [
        "-m venv .venv",
        "pip install --quiet -e '.[dev]'",
        "ruff check",
        "ruff format --check",
        "lint-imports",
        "mypy",
        "/usr/bin/chromium:chromium",
        "apt-get install",
        "-m pytest",
    ]
    found: dict[str, int] = {}
    after = 0
    for step in steps:
        later = [index for index, line in enumerate(lines) if index >= after and step in line]
        assert later, f"{step!r} not after {found} in `make -n test`:\n{dry_run.stdout}"
        found[step] = after = later[0] + 1
    packages = lines[found["/usr/bin/chromium:chromium"] - 1]
    for package in ("chromium", "nginx-light", "tor", "postgresql-client", "git", "docker-compose"):
        assert re.search(rf":{package}\b", packages), package
