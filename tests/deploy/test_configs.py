"""The shipped deployment files, checked by the programs that read them (`make test` installs nginx and tor;
without them these tests fail, never skip), and real requests through nginx, under Debian's own nginx.conf
(which turns gzip and an access log on), that come back uncompressed and leave no trace."""

from __future__ import annotations

import grp
import gzip
import http.client
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2 as httpx
import pytest

from app.kit.config import Settings
from tests.conftest import CHEAP_ARGON2
from tests.support.ports import free_ports

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TOR = shutil.which("tor") or "/usr/sbin/tor"


def require(program: str) -> None:
    if not Path(program).exists():
        pytest.fail(
            f"{program} is missing: install Debian's nginx-light and tor (`make test` does)", pytrace=False
        )


STOCK_NGINX_CONF = Path("/etc/nginx/nginx.conf")
# What makes Debian's stock nginx.conf the test it is: compression and an access log on at
# the http level, and the two places it includes other files from.
STOCK_PROMISES = (
    "gzip on;",
    "access_log /var/log/nginx/access.log;",
    "include /etc/nginx/conf.d/*.conf;",
    "include /etc/nginx/sites-enabled/*;",
)
# A client address nothing else uses: the tests' requests come from it (all of 127/8 is loopback).
CLIENT_ADDRESS = "127.0.0.2"
SPOOFED_ADDRESS = "203.0.113.99"
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class DebianNginx:
    """Debian's own nginx.conf in a temporary prefix, with one of our files in its conf.d/."""

    conf: Path
    logs: Path  # every log it writes: the stock error and access logs, and its own output

    def command(self, *args: str) -> list[str]:
        return [NGINX, "-c", str(self.conf), "-e", str(self.logs / "error.log"), *args]


def debian_nginx(tmp_path: Path, conf_text: str) -> DebianNginx:
    """Debian's stock nginx.conf copied into tmp_path with only its paths moved there (pid, logs,
    conf.d/, sites-enabled/, temp dirs) and its user set to ours, so that it runs unprivileged;
    `gzip on` and the stock access log stay. `conf_text` goes in conf.d/ as docs/deploy.md says,
    and sites-enabled/ is empty: the docs have the default site removed."""
    require(NGINX)
    if not STOCK_NGINX_CONF.exists():
        pytest.fail(f"{STOCK_NGINX_CONF} is missing: `apt-get install nginx-light`", pytrace=False)
    stock = STOCK_NGINX_CONF.read_text()
    if missing := [promise for promise in STOCK_PROMISES if promise not in stock]:
        pytest.fail(f"{STOCK_NGINX_CONF} is not Debian's stock file (no {missing})", pytrace=False)
    prefix = tmp_path / "nginx"
    logs = prefix / "log"
    temp = prefix / "temp"
    for directory in (prefix / "conf.d", prefix / "sites-enabled", logs, temp):
        directory.mkdir(parents=True)
    main = stock
    for old, new in (
        ("/etc/nginx/conf.d/", f"{prefix}/conf.d/"),
        ("/etc/nginx/sites-enabled/", f"{prefix}/sites-enabled/"),
        ("/var/log/nginx/", f"{logs}/"),
        ("/run/nginx.pid", f"{prefix}/nginx.pid"),
    ):
        assert old in main, old
        main = main.replace(old, new)
    # The stock file leaves the temp dirs to nginx's built-in paths under /var/lib/nginx.
    temp_paths = "".join(f"\t{kind}_temp_path {temp}/{kind};\n" for kind in TEMP_KINDS)
    assert main.count("\nhttp {\n") == 1
    main = main.replace("\nhttp {\n", "\nhttp {\n" + temp_paths)
    # Root (a CI container) would otherwise hand the workers to www-data, who cannot enter tmp_path.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
    main, count = re.subn(r"^user \S+;$", user, main, count=1, flags=re.MULTILINE)
    assert count == 1
    (prefix / "nginx.conf").write_text(main)
    (prefix / "conf.d" / "daylight.conf").write_text(conf_text)
    return DebianNginx(prefix / "nginx.conf", logs)


def local_copy(conf_text: str, upstreams: tuple[int, int], listeners: tuple[int, int]) -> str:
    """One of our nginx files verbatim but for its ports, and its upstreams on loopback (the compose
    variant names compose services, which nginx would fail to resolve here)."""
    for pattern, port in (
        (r"server (?:127\.0\.0\.1|app\d):8000;", upstreams[0]),
        (r"server (?:127\.0\.0\.1|app\d):8001;", upstreams[1]),
        (r"listen (?:127\.0\.0\.1:)?8080;", listeners[0]),
        (r"listen (?:127\.0\.0\.1:)?8081;", listeners[1]),
    ):
        conf_text, count = re.subn(
            pattern, lambda match, port=port: f"{match[0].split()[0]} 127.0.0.1:{port};", conf_text
        )
        assert count, pattern
    return conf_text


@contextmanager
def running(nginx: DebianNginx, ports: tuple[int, ...]) -> Iterator[None]:
    """nginx in the foreground, its output into its log dir, until every port answers; stopped after."""
    with (nginx.logs / "nginx.out").open("w") as sink:
        process = subprocess.Popen(nginx.command("-g", "daemon off;"), stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            for port in ports:
                while True:
                    assert process.poll() is None, (nginx.logs / "nginx.out").read_text()
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        assert time.monotonic() < deadline, (nginx.logs / "nginx.out").read_text()
                        time.sleep(0.05)
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)


# A page of a few KB that gzip shrinks to almost nothing: what nginx's `gzip on` would compress.
PAGE = ("<!doctype html><title>Daylight</title>" + "<p>Your report was received.</p>\n" * 200).encode()


class RecordingBackend(ThreadingHTTPServer):
    """Stands in for the apps: records the headers of each request it receives and answers PAGE,
    compressed when the request says it accepts gzip (as an app with compression would)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.received: list[list[tuple[str, str]]] = []
        super().__init__(("127.0.0.1", 0), RecordingHandler)

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port


class RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingBackend

    def do_GET(self) -> None:
        self.server.received.append([(name.lower(), value) for name, value in self.headers.items()])
        body, encoding = PAGE, None
        if "gzip" in self.headers.get("accept-encoding", ""):
            body, encoding = gzip.compress(PAGE), "gzip"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stub_app() -> Iterator[RecordingBackend]:
    server = RecordingBackend()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def get_from(port: int, canary: str) -> tuple[int, dict[str, str], bytes]:
    """A GET as a browser asking for compression would send it, from CLIENT_ADDRESS, carrying
    forged client-address headers, with a canary in the path, query and User-Agent."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(CLIENT_ADDRESS, 0))
    try:
        connection.request(
            "GET",
            f"/{canary}?q={canary}",
            headers={
                "Host": "daylightexampleaddress.onion",
                "Accept-Encoding": "gzip, br",
                "User-Agent": f"{canary}-agent",
                "X-Forwarded-For": SPOOFED_ADDRESS,
                "X-Real-IP": SPOOFED_ADDRESS,
                "Forwarded": f"for={SPOOFED_ADDRESS}",
            },
        )
        response = connection.getresponse()
        return (
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


NGINX_FILES = ("daylight.conf", "compose.conf")


@pytest.mark.parametrize("name", NGINX_FILES)
def test_the_nginx_config_is_valid_under_debians_stock_nginx_conf(tmp_path: Path, name: str) -> None:
    """`nginx -t` with our file in conf.d/ of Debian's own nginx.conf, which says `gzip on`:
    a second http-level `gzip` in ours would be refused as a duplicate."""
    conf = local_copy((DEPLOY / "nginx" / name).read_text(), (8000, 8001), (8080, 8081))
    result = subprocess.run(
        debian_nginx(tmp_path, conf).command("-t"), capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr


# Requests whose addresses an upstream could read. nginx adds none of its own; a client may send any.
ADDRESS_HEADERS = {
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "via",
}


@pytest.mark.parametrize("name", NGINX_FILES)
def test_nginx_under_debians_stock_conf_compresses_nothing_logs_nothing_and_passes_no_address(
    tmp_path: Path, stub_app: RecordingBackend, name: str
) -> None:
    listeners = free_ports(2)
    conf = local_copy((DEPLOY / "nginx" / name).read_text(), (stub_app.port, stub_app.port), listeners)
    nginx = debian_nginx(tmp_path, conf)
    canary = f"CANARY{secrets.token_hex(6)}"
    with running(nginx, listeners):
        answers = [get_from(port, canary) for port in listeners]
    for status, headers, body in answers:
        assert status == 200
        assert "content-encoding" not in headers, headers
        assert body == PAGE
        # `server_tokens off`: the name alone, no version.
        assert headers.get("server") == "nginx", headers
    assert len(stub_app.received) == len(listeners)
    for received in stub_app.received:
        names = {name for name, _ in received}
        assert not names & ADDRESS_HEADERS, received
        # Nor may the app be asked to compress: nginx would pass its compressed answer through.
        assert "accept-encoding" not in names, received
        for _, value in received:
            assert CLIENT_ADDRESS not in value, received
            assert SPOOFED_ADDRESS not in value, received
    assert_no_trace(nginx.logs, canary)
    access_log = nginx.logs / "access.log"
    assert not access_log.exists() or access_log.read_text() == ""


def assert_no_trace(logs: Path, canary: str) -> None:
    files = [path for path in logs.rglob("*") if path.is_file()]
    assert files, "nginx wrote nothing at all: is it the stock config's log dir?"
    for path in files:
        text = path.read_text(errors="replace")
        for needle in (canary, CLIENT_ADDRESS, SPOOFED_ADDRESS, "GET /"):
            assert needle not in text, (path.name, needle, text)


def test_without_our_server_level_directives_the_stock_conf_compresses_logs_and_names_its_version(
    tmp_path: Path, stub_app: RecordingBackend
) -> None:
    """The check above has teeth: our file less its `gzip off`, `access_log off` and `server_tokens
    off` lines, under the same stock nginx.conf, answers gzip-compressed, with the version, and
    logs the client's address and request."""
    listeners = free_ports(2)
    conf = local_copy(
        (DEPLOY / "nginx" / "daylight.conf").read_text(), (stub_app.port, stub_app.port), listeners
    )
    conf, count = re.subn(r"^\s*(gzip|access_log|server_tokens) off;$", "", conf, flags=re.MULTILINE)
    assert count == 7
    nginx = debian_nginx(tmp_path, conf)
    canary = f"CANARY{secrets.token_hex(6)}"
    with running(nginx, listeners):
        status, headers, body = get_from(listeners[0], canary)
    assert status == 200
    assert headers.get("content-encoding") == "gzip"
    assert gzip.decompress(body) == PAGE
    assert headers.get("server", "").startswith("nginx/")
    # The app was not asked to compress: nginx did, because of the stock `gzip on`.
    assert "accept-encoding" not in {name for name, _ in stub_app.received[0]}
    logged = (nginx.logs / "access.log").read_text()
    assert CLIENT_ADDRESS in logged
    assert canary in logged


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
    # The compose variant names its data directory (the container's volume); the host one leaves
    # it to Debian's defaults.
    data = f"DataDirectory {tmp_path}/data"
    local, count = re.subn(r"^DataDirectory /var/lib/tor$", data, local, flags=re.MULTILINE)
    assert count == (torrc == "torrc-compose")
    config = tmp_path / "torrc"
    config.write_text(local if count else local + f"\n{data}\n")
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
    """`daylight serve` on loopback and nginx (Debian's stock nginx.conf with ours in conf.d/) in
    front of it, both logging into tmp_path."""
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
    ports = free_ports(4)
    app_ports, proxy_ports = ports[:2], ports[2:]
    conf = local_copy((DEPLOY / "nginx" / "daylight.conf").read_text(), app_ports, proxy_ports)
    nginx = debian_nginx(tmp_path, conf)
    app_log = tmp_path / "serve.log"
    with app_log.open("w") as app_sink:
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
        try:
            with running(nginx, proxy_ports):
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
                    assert time.monotonic() < deadline, (
                        app_log.read_text() + (nginx.logs / "nginx.out").read_text()
                    )
                    time.sleep(0.2)
                yield intake, staff, tmp_path, data_dir
        finally:
            app.terminate()
            app.wait(timeout=10)


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
    # Debian's stock access log, moved into tmp_path with the rest of its nginx.conf.
    for access_log in logs.rglob("access.log"):
        assert access_log.read_text() == ""
