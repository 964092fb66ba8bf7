"""deploy/docker-compose.yml as Docker Compose resolves it, and what it promises (docs/deploy.md,
"Containers"); the tor image's entrypoint, run with Debian's tor.

`docker-compose` comes from Debian's docker-compose package and tor from Debian's tor (`make test`
installs both); without them these tests fail, never skip. Neither needs a Docker daemon."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"
TOR = shutil.which("tor") or "/usr/sbin/tor"
APPS = ("app1", "app2")


def require(program: str, package: str) -> None:
    if not Path(program).exists():
        pytest.fail(f"{program} is missing: install Debian's {package} (`make test` does)", pytrace=False)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The configuration Compose makes of the file: validated against its schema, with anchors,
    merge keys and relative paths resolved."""
    require(DOCKER_COMPOSE, "docker-compose")
    result = subprocess.run(
        [DOCKER_COMPOSE, "--file", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_every_service_restarts_gains_no_privileges_and_has_a_read_only_root(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", *APPS, "nginx", "tor"}
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("read_only") is True, name
        assert "ports" not in service, name
        assert "network_mode" not in service, name
    for name in (*APPS, "tor"):
        assert services[name].get("cap_drop") == ["ALL"], name


def test_only_tor_reaches_outside_and_every_other_network_is_internal(compose: dict[str, Any]) -> None:
    networks = compose["networks"]
    outside = {name for name, network in networks.items() if not (network or {}).get("internal")}
    assert outside == {"outside"}
    attached = {name: set(service["networks"]) for name, service in compose["services"].items()}
    assert {name for name, on in attached.items() if on & outside} == {"tor"}
    # Segments: only the apps reach the database, only nginx reaches the apps, only tor reaches nginx.
    assert attached["postgres"] == {"database"}
    for app in APPS:
        assert attached[app] == {"database", "apps"}
    assert attached["nginx"] == {"apps", "onion"}
    assert attached["tor"] == {"onion", "outside"}


def test_tor_forwards_to_nginx_at_its_fixed_address(compose: dict[str, Any]) -> None:
    address = compose["services"]["nginx"]["networks"]["onion"]["ipv4_address"]
    subnet = compose["networks"]["onion"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    ports = re.findall(r"^HiddenServicePort 80 (\S+)$", (DEPLOY / "tor" / "torrc-compose").read_text(), re.M)
    assert ports == [f"{address}:8080", f"{address}:8081"]


def test_postgres_and_the_apps_are_checked_and_waited_for(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for app in APPS:
        assert services[app]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        test = services[app]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        # The image has Python and no curl: the check is a Python one-liner, fetching both apps' /healthz.
        compile(test[3], "healthcheck", "exec")
        assert "/healthz" in test[3]
        assert "8000" in test[3]
        assert "8001" in test[3]
    assert services["nginx"]["depends_on"] == {app: {"condition": "service_healthy"} for app in APPS}


def test_the_database_password_is_a_secret_never_an_environment_variable(compose: dict[str, Any]) -> None:
    raw = COMPOSE_FILE.read_text()
    assert "${" not in raw, "nothing is taken from the environment or deploy/.env"
    services = compose["services"]
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in variable or variable.endswith("_FILE"), (name, variable)
            if variable.endswith("DATABASE_URL"):
                assert urlsplit(value).password is None, (name, variable)
    secrets = compose["secrets"]
    assert set(secrets) == {"postgres_password", "daylight_pgpass"}
    for secret in secrets.values():
        assert Path(secret["file"]).parent == DEPLOY / "secrets"

    def mounted(service: dict[str, Any]) -> set[str]:
        return {entry if isinstance(entry, str) else entry["source"] for entry in service.get("secrets", [])}

    postgres = services["postgres"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert mounted(postgres) == {"postgres_password"}
    for app in APPS:
        # libpq, under psycopg, reads the password from the file PGPASSFILE names.
        assert services[app]["environment"]["PGPASSFILE"] == "/run/secrets/daylight_pgpass"
        assert mounted(services[app]) == {"daylight_pgpass"}
    for name in ("nginx", "tor"):
        assert not mounted(services[name]), name


def test_the_tor_image_has_tor_built_in_and_client_keys_a_mounted_place(compose: dict[str, Any]) -> None:
    tor = compose["services"]["tor"]
    assert "image" not in tor
    assert "command" not in tor
    assert Path(tor["build"]["context"]) == DEPLOY / "tor"
    dockerfile = (DEPLOY / "tor" / "Dockerfile").read_text()
    # Installed once, at build time: a RUN instruction (continuation lines joined), not the entrypoint.
    runs = [line for line in dockerfile.replace("\\\n", " ").splitlines() if line.startswith("RUN ")]
    assert any("apt-get install -y --no-install-recommends tor" in run for run in runs), runs
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users == ["debian-tor"]
    assert 'ENTRYPOINT ["/bin/sh", "/usr/local/bin/start-tor"]' in dockerfile
    volumes = set(tor["volumes"])
    assert f"{DEPLOY}/tor/torrc-compose:/etc/tor/torrc:ro" in volumes
    assert f"{DEPLOY}/tor/authorized_clients:/etc/tor/authorized_clients:ro" in volumes
    assert (DEPLOY / "tor" / "authorized_clients").is_dir()
    assert "tor:/var/lib/tor:rw" in volumes


def client_key() -> str:
    """A staff device's public key as Tor's authorized_clients/ holds it (here random bytes: Tor
    checks the form, and no client ever connects)."""
    return "descriptor:x25519:" + base64.b32encode(os.urandom(32)).decode().rstrip("=") + "\n"


def start_tor(tmp_path: Path, keys: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """deploy/tor/start-tor with Debian's tor and torrc-compose, every path in tmp_path, no network."""
    require(TOR, "tor")
    given = tmp_path / "given"
    given.mkdir()
    for name, text in keys.items():
        (given / name).write_text(text)
    state = tmp_path / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    torrc = (DEPLOY / "tor" / "torrc-compose").read_text().replace("/var/lib/tor", str(state))
    torrc = torrc.replace("Log notice stdout", "Log info stdout") + "\nDisableNetwork 1\n"
    (tmp_path / "torrc").write_text(torrc)
    staff_keys = state / "daylight-staff" / "authorized_clients"
    output = tmp_path / "tor.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            ["/bin/sh", str(DEPLOY / "tor" / "start-tor")],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "AUTHORIZED_CLIENTS_FROM": str(given),
                "AUTHORIZED_CLIENTS_TO": str(staff_keys),
                "TORRC": str(tmp_path / "torrc"),
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return process, output, staff_keys


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param({}, id="none"),
        pytest.param({"README": "not a key"}, id="no-auth-file"),
        pytest.param(
            {"laptop.auth": client_key(), "phone.auth": "descriptor:x25519:short\n"}, id="malformed"
        ),
        pytest.param({"laptop.auth": client_key() + client_key()}, id="two-lines"),
    ],
)
def test_start_tor_refuses_to_start_without_a_well_formed_client_key_in_every_file(
    tmp_path: Path, keys: dict[str, str]
) -> None:
    """With no key the staff onion service would be open to whoever learns its address; tor itself
    only warns about a key it cannot parse. So start-tor stops before tor runs at all."""
    process, output, staff_keys = start_tor(tmp_path, keys)
    try:
        assert process.wait(timeout=30) == 1
    finally:
        process.kill()
        process.wait()
    text = output.read_text()
    assert "not starting tor" in text
    assert "Tor " not in text
    assert not staff_keys.exists()


def test_start_tor_puts_exactly_the_given_keys_where_tor_loads_them(tmp_path: Path) -> None:
    """And only those: a key deleted from deploy/tor/authorized_clients/ is no longer authorised
    once the container restarts."""
    stale = tmp_path / "state" / "daylight-staff" / "authorized_clients" / "lost-phone.auth"
    stale.parent.mkdir(mode=0o700, parents=True)
    for directory in (tmp_path / "state", stale.parent.parent):
        directory.chmod(0o700)
    stale.write_text(client_key())
    keys = {"laptop.auth": client_key(), "phone.auth": client_key().rstrip("\n")}
    process, output, staff_keys = start_tor(tmp_path, keys)
    try:
        deadline = time.monotonic() + 60
        while output.read_text().count("Loaded a client authorization key file") < len(keys):
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    text = output.read_text()
    assert "start-tor: 2 staff device key(s) authorised" in text
    for name in keys:
        assert f"Loaded a client authorization key file {name}." in text
    assert not stale.exists()
    assert {path.name for path in staff_keys.iterdir()} == set(keys)
    for name, key in keys.items():
        assert (staff_keys / name).read_text() == key
        assert (staff_keys / name).stat().st_mode & 0o077 == 0
    for directory in (staff_keys, staff_keys.parent):
        assert directory.stat().st_mode & 0o777 == 0o700
