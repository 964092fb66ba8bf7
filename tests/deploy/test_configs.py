"""The shipped deployment files, checked by the programs that read them (`make test` installs nginx and tor;
without them these tests fail, never skip), and a real request through nginx that leaves no trace."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from app.kit.config import Settings
from tests.conftest import CHEAP_ARGON2

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOR = shutil.which("tor") or "/usr/sbin/tor"


def require(program: str) -> None:
    if not Path(program).exists():
        pytest.fail(
            f"{program} is missing: install Debian's nginx-light and tor (`make test` does)", pytrace=False
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_main_config(tmp_path: Path, server_conf: Path) -> Path:
    """A minimal nginx.conf around the shipped server blocks, writable by a test run."""
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / name).mkdir(exist_ok=True)
    main = tmp_path / "nginx.conf"
    main.write_text(f"""
error_log {tmp_path}/error.log crit;
pid {tmp_path}/nginx.pid;
daemon off;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {tmp_path}/client_body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    # Where nginx would log requests if the shipped config did not turn it off.
    access_log {tmp_path}/access.log;
    include {server_conf};
}}
""")
    return main


def test_the_nginx_config_is_valid(tmp_path: Path) -> None:
    require(NGINX)
    result = subprocess.run(
        [NGINX, "-t", "-c", str(nginx_main_config(tmp_path, DEPLOY / "nginx" / "daylight.conf"))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_compose_nginx_config_differs_only_in_its_upstreams_and_listeners() -> None:
    def directives(path: Path) -> list[str]:
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        return [
            line
            for line in lines
            if line and not line.startswith(("server app", "server 127.0.0.1:800", "listen "))
        ]

    assert directives(DEPLOY / "nginx" / "daylight.conf") == directives(DEPLOY / "nginx" / "compose.conf")


@pytest.mark.parametrize("torrc", ["torrc", "torrc-compose"])
def test_the_tor_configs_are_valid_and_safe(tmp_path: Path, torrc: str) -> None:
    require(TOR)
    text = (DEPLOY / "tor" / torrc).read_text()
    for needle in (
        "SafeLogging 1",
        "HiddenServicePoWDefensesEnabled 1",
        "HiddenServiceVersion 3",
        "SocksPort 0",
    ):
        assert needle in text, needle
    # Tor checks that its directories exist and are private: point them into the test's tmp dir.
    local = text.replace("/var/lib/tor/", f"{tmp_path}/").replace("Log notice syslog", "Log notice stdout")
    for directory in re.findall(r"HiddenServiceDir (\S+)", local):
        Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
    config = tmp_path / "torrc"
    config.write_text(local + f"\nDataDirectory {tmp_path}/data\n")
    (tmp_path / "data").mkdir(mode=0o700)
    result = subprocess.run(
        [TOR, "--verify-config", "-f", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_the_compose_file_passes_exists() -> None:
    names = set(
        re.findall(r"^\s+(DAYLIGHT_[A-Z_]+):", (DEPLOY / "docker-compose.yml").read_text(), re.MULTILINE)
    )
    assert names, "no DAYLIGHT_ settings found"
    for name in names:
        field = name.removeprefix("DAYLIGHT_").lower().split("__", 1)[0]
        assert field in Settings.model_fields, name


def test_the_systemd_units_are_hardened() -> None:
    service = (DEPLOY / "systemd" / "daylight.service").read_text()
    for directive in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "User=daylight"):
        assert directive in service, directive
    for timer in ("daylight-purge.timer", "daylight-checkpoint.timer"):
        assert (DEPLOY / "systemd" / timer).exists()


@pytest.fixture
def through_nginx(tmp_path: Path) -> Iterator[tuple[str, str, Path, Path]]:
    """`daylight serve` on loopback and nginx in front of it, both logging into tmp_path."""
    require(NGINX)
    env = {
        **os.environ,
        "DAYLIGHT_ARGON2__TIME_COST": str(CHEAP_ARGON2.time_cost),
        "DAYLIGHT_ARGON2__MEMORY_COST_KIB": str(CHEAP_ARGON2.memory_cost_kib),
    }
    env.pop("DAYLIGHT_DATABASE_URL", None)
    data_dir = tmp_path / "org"
    subprocess.run(
        [sys.executable, "-m", "app", "demo", "--data-dir", str(data_dir)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    app_ports = free_port(), free_port()
    proxy_ports = free_port(), free_port()
    conf = (DEPLOY / "nginx" / "daylight.conf").read_text()
    for old, new in zip(
        ("127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8080", "127.0.0.1:8081"),
        (*app_ports, *proxy_ports),
        strict=True,
    ):
        conf = conf.replace(old, f"127.0.0.1:{new}")
    conf = conf.replace("error_log stderr crit;", f"error_log {tmp_path}/error.log crit;")
    (tmp_path / "daylight.conf").write_text(conf)
    app_log, nginx_out = tmp_path / "serve.log", tmp_path / "nginx.out"
    with app_log.open("w") as app_sink, nginx_out.open("w") as nginx_sink:
        app = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app",
                "serve",
                "--data-dir",
                str(data_dir),
                "--intake-port",
                str(app_ports[0]),
                "--staff-port",
                str(app_ports[1]),
            ],
            env=env,
            stdout=app_sink,
            stderr=subprocess.STDOUT,
        )
        proxy = subprocess.Popen(
            [NGINX, "-c", str(nginx_main_config(tmp_path, tmp_path / "daylight.conf"))],
            stdout=nginx_sink,
            stderr=subprocess.STDOUT,
        )
        try:
            intake, staff = (f"http://127.0.0.1:{port}" for port in proxy_ports)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (
                        httpx.get(f"{intake}/healthz").status_code
                        == 200
                        == httpx.get(f"{staff}/healthz").status_code
                    ):
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, app_log.read_text() + nginx_out.read_text()
                time.sleep(0.2)
            yield intake, staff, tmp_path, data_dir
        finally:
            for process in (proxy, app):
                process.terminate()
                process.wait(timeout=10)


def test_a_report_through_nginx_leaves_nothing_in_any_log(through_nginx: tuple[str, str, Path, Path]) -> None:
    intake, staff, logs, _ = through_nginx
    canary = f"CANARY{secrets.token_hex(6)}"
    headers = {"user-agent": f"{canary}-agent", "x-forwarded-for": "203.0.113.99"}
    page = httpx.get(f"{intake}/", headers=headers)
    assert page.status_code == 200
    assert "server" not in page.headers or "nginx/" not in page.headers["server"]
    assert "content-encoding" not in httpx.get(f"{intake}/", headers={"accept-encoding": "gzip"}).headers
    sent = httpx.post(f"{intake}/api/v1/tips", headers=headers, json={"narrative": canary})
    assert sent.status_code == 201
    upload = httpx.post(
        f"{intake}/api/v1/tips",
        headers=headers,
        data={"narrative": canary},
        files=[("files", (f"{canary}.bin", os.urandom(2_000_000), "application/octet-stream"))],
    )
    assert upload.status_code == 201
    assert (
        httpx.post(
            f"{staff}/api/v1/auth/login",
            headers=headers,
            json={"username": canary, "password": canary, "otp": "000000"},
        ).status_code
        == 401
    )
    time.sleep(0.5)
    for path in logs.rglob("*"):
        if (path.is_file() and path.suffix in (".log", ".out")) or path.name == "error.log":
            # The one line `serve` prints at start names its own listening address, not a client's.
            text = "\n".join(
                line
                for line in path.read_text(errors="replace").splitlines()
                if not line.startswith("Intake app on http://")
            )
            for needle in (canary, "203.0.113.99", "127.0.0.1", "GET /", "POST /"):
                assert needle not in text, (path.name, needle)
    access_log = logs / "access.log"
    assert not access_log.exists() or access_log.read_text() == ""
