"""`daylight serve` on a non-loopback address warns that plain HTTP there logs nobody in (staff
cookies are __Host- and Secure), and still starts: behind nginx in a container, 0.0.0.0 is right."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.entrypoints import serve as serving
from app.kit.config import Environment, Settings
from tests.conftest import CHEAP_ARGON2

ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - the address under test, never bound here


def settings_for(data_dir: Path, environment: Environment) -> Settings:
    return Settings(data_dir=data_dir, argon2=CHEAP_ARGON2, environment=environment)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_gets_no_warning(data_dir: Path, host: str) -> None:
    for environment in Environment:
        assert serving.plain_http_warning(settings_for(data_dir, environment), host) is None


@pytest.mark.parametrize("host", [ALL_INTERFACES, "::", "192.0.2.10", "10.1.2.3", "staff.example.org"])
def test_any_other_address_gets_the_warning(data_dir: Path, host: str) -> None:
    warning = serving.plain_http_warning(settings_for(data_dir, Environment.PRODUCTION), host)
    assert warning is not None
    assert f"listens on {host}" in warning
    assert "__Host- and Secure" in warning
    assert "if browsers reach this address over plain HTTP" in warning
    assert "TLS (nginx) or the onion service" in warning
    development = serving.plain_http_warning(settings_for(data_dir, Environment.DEVELOPMENT), host)
    assert development is not None
    assert "loopback" in development


def test_serve_prints_the_warning_before_it_binds(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Bound(Exception):
        pass

    def bind_listener(host: str, port: int) -> None:
        raise Bound

    monkeypatch.setattr(serving, "bind_listener", bind_listener)
    monkeypatch.delenv("DAYLIGHT_ENVIRONMENT", raising=False)  # the default: production
    for host, warned in [(ALL_INTERFACES, True), ("127.0.0.1", False)]:
        with pytest.raises(Bound):  # then it goes on to bind: a warning, not a refusal
            serving.serve(data_dir, host=host, intake_port=0, staff_port=0, intake_workers=1, staff_workers=1)
        assert ("WARNING: the staff app listens on 0.0.0.0" in capsys.readouterr().err) is warned
