"""The documented install, as an operator does it: the wheel, in a fresh venv, run from elsewhere.

The wheel is built from the files the Dockerfile's build stage copies (BUILD_INPUTS, and nothing
else of this checkout), installed with its dependencies into a new venv (not editable, no system
site-packages), and every command runs from an empty directory outside the repository with the
venv's own `daylight`: nothing can be imported from the source tree. `init` (on SQLite and on
PostgreSQL), `demo`, `serve` (real requests to both apps) and `doctor` then work from what the
wheel carries alone: the migrations, templates, static files, catalogs and data files.

Nothing is skipped: a missing `venv`, a failed build or install fails the test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.conftest import CHEAP_ARGON2, backends, create_postgres_schema, drop_postgres_schema
from tests.deploy.conftest import BUILD_INPUTS, COMMAND_SECONDS, REPO, Installed, checked, operator_env
from tests.support.ports import free_ports

pytestmark = pytest.mark.serve

SERVE_START_SECONDS = 30
STOP_SECONDS = 30


def run(installed: Installed, *args: str, env: dict[str, str] | None = None) -> str:
    """A command of the installed venv, from its empty run dir."""
    return checked(
        list(args),
        cwd=installed.run_dir,
        env=env if env is not None else operator_env(installed.venv),
        timeout=COMMAND_SECONDS,
    )


def test_the_dockerfile_builds_from_the_same_inputs() -> None:
    """The Dockerfile copies BUILD_INPUTS from the source tree, no more and no less (the runtime
    stage copies only from the build stage): this test's wheel is the image's."""
    copied: set[str] = set()
    for line in (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if words[:1] != ["COPY"] or any(word.startswith("--from=") for word in words):
            continue
        *sources, _target = [word for word in words[1:] if not word.startswith("--")]
        copied.update(source.rstrip("/") for source in sources)
    assert copied == set(BUILD_INPUTS)


def test_the_app_comes_from_the_venv_with_every_file_of_the_package(installed: Installed) -> None:
    output = run(
        installed,
        installed.python,
        "-c",
        "import sysconfig, app; print(app.__file__); print(sysconfig.get_paths()['purelib'])",
    )
    module, purelib = (Path(line).resolve() for line in output.splitlines())
    assert purelib.is_relative_to(installed.venv.resolve()), purelib
    assert module.is_relative_to(purelib), f"app imported from {module}, not from {purelib}"
    package = module.parent
    # Every file of the source package, data files included (migrations, templates, static
    # files, catalogs, seed and reference data): a file left out of package-data is named here.
    missing = sorted(
        str(path.relative_to(installed.source))
        for path in (installed.source / "app").rglob("*")
        if path.is_file() and not (package / path.relative_to(installed.source / "app")).is_file()
    )
    assert not missing, f"not in the installed package: {missing}"
    assert sorted((package / "migrations" / "versions").glob("*.py")), "no migration revisions"


@pytest.fixture(params=backends())
def database_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """DAYLIGHT_DATABASE_URL for the backend: none on SQLite (the data dir's own file), a fresh schema
    on PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    schema, url = create_postgres_schema("daylight_wheel")
    try:
        yield {"DAYLIGHT_DATABASE_URL": url}
    finally:
        drop_postgres_schema(schema)


def test_init_from_the_wheel_then_doctor_finds_nothing_failing(
    installed: Installed, database_env: dict[str, str], tmp_path: Path
) -> None:
    """`init` migrates the database from the packaged migrations; production Argon2 cost (init
    derives no password, and doctor fails a cost below the floor)."""
    env = operator_env(installed.venv, **database_env)
    data_dir = tmp_path / "org"
    run(installed, installed.daylight, "init", "--data-dir", str(data_dir), env=env)
    if not database_env:
        assert (data_dir / "daylight.sqlite3").is_file()
    # doctor exits 1 on any failure; each failing check's line starts with FAIL.
    report = run(installed, installed.daylight, "doctor", "--data-dir", str(data_dir), env=env)
    assert not [line for line in report.splitlines() if line.startswith("FAIL")], report
    assert "at the latest migration" in report


def test_demo_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    """The demo reads the packaged station seed; cheap Argon2id for its accounts, as the browser tests."""
    env = operator_env(
        installed.venv,
        DAYLIGHT_ARGON2__TIME_COST=str(CHEAP_ARGON2.time_cost),
        DAYLIGHT_ARGON2__MEMORY_COST_KIB=str(CHEAP_ARGON2.memory_cost_kib),
    )
    data_dir = tmp_path / "demo"
    run(installed, installed.daylight, "demo", "--data-dir", str(data_dir), env=env)
    assert (data_dir / "demo-credentials.json").is_file()


def both_healthy(intake: str, staff: str) -> bool:
    try:
        return all(httpx.get(f"{base}/healthz", timeout=2).status_code == 200 for base in (intake, staff))
    except httpx.TransportError:
        return False


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the process group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def test_serve_from_the_wheel_answers_on_both_apps(installed: Installed, tmp_path: Path) -> None:
    """A production organisation served by the installed `daylight serve`: health, the intake form
    with its stylesheet, a translated form (the catalogs), and the staff login page."""
    data_dir = tmp_path / "org"
    run(installed, installed.daylight, "init", "--data-dir", str(data_dir))
    intake_port, staff_port = free_ports(2)
    intake, staff = f"http://127.0.0.1:{intake_port}", f"http://127.0.0.1:{staff_port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                installed.daylight,
                "serve",
                "--data-dir",
                str(data_dir),
                "--intake-port",
                str(intake_port),
                "--staff-port",
                str(staff_port),
                "--intake-workers",
                "1",
                "--staff-workers",
                "1",
            ],
            cwd=installed.run_dir,
            env=operator_env(installed.venv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the supervisor and its workers
        )
    pgid = process.pid
    try:
        deadline = time.monotonic() + SERVE_START_SECONDS
        while not both_healthy(intake, staff):
            assert process.poll() is None, f"serve exited ({process.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"daylight serve did not come up:\n{log_path.read_text()}"
            time.sleep(0.2)

        form = httpx.get(f"{intake}/", timeout=10)
        assert form.status_code == 200, form.text
        assert "<form" in form.text
        stylesheets = re.findall(r'href="(/static/[^"]+)"', form.text)
        assert stylesheets, form.text
        for href in stylesheets:
            assert httpx.get(f"{intake}{href}", timeout=10).status_code == 200, href
        # A translated page: its catalog is read from the package and compiled at first use.
        assert "Leave this site quickly" in form.text
        translated = httpx.get(f"{intake}/", params={"lang": "ug"}, timeout=10)
        assert translated.status_code == 200, translated.text
        assert '<html lang="ug"' in translated.text
        assert "Leave this site quickly" not in translated.text
        assert httpx.get(f"{staff}/login", timeout=10).status_code == 200

        process.terminate()
        process.wait(timeout=STOP_SECONDS)
        deadline = time.monotonic() + STOP_SECONDS
        while group_alive(pgid):
            assert time.monotonic() < deadline, f"workers left after SIGTERM:\n{log_path.read_text()}"
            time.sleep(0.2)
    finally:
        if process.poll() is None or group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(timeout=STOP_SECONDS)
