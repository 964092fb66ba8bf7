"""The Argon2id floor: production settings refuse a cost below OWASP's minimum, `daylight doctor`
fails on one whatever the environment, and warns about verifiers derived at a lower cost."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest
from pydantic import SecretStr, ValidationError

from app.auth.credentials import authenticate, create_account
from app.auth.models import Role
from app.auth.second_factor import new_totp_secret
from app.entrypoints import cli
from app.entrypoints.doctor import Finding, Verdict, check_argon2, run_checks
from app.kit.config import ARGON2_MEMORY_FLOOR_KIB, Argon2Cost, Environment, Settings, load_settings
from app.kit.db import Database
from app.kit.server_secrets import load_server_secrets
from tests.conftest import CHEAP_ARGON2

PRODUCTION, DEVELOPMENT = Environment.PRODUCTION, Environment.DEVELOPMENT


def settings_with(cost: Argon2Cost, environment: Environment = PRODUCTION, **fields: object) -> Settings:
    return Settings(argon2=cost, environment=environment, **fields)  # type: ignore[arg-type]


def test_production_refuses_t1_8_kib_and_names_the_floor() -> None:
    with pytest.raises(ValidationError, match="at least 47104") as refused:
        settings_with(Argon2Cost(time_cost=1, memory_cost_kib=8))
    assert "OWASP" in str(refused.value)


def test_production_refuses_a_weak_cost_from_the_environment_and_takes_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(tmp_path).argon2 == Argon2Cost()
    assert Settings().argon2.below_floor() is None
    monkeypatch.setenv("DAYLIGHT_ARGON2__TIME_COST", "1")
    monkeypatch.setenv("DAYLIGHT_ARGON2__MEMORY_COST_KIB", "8")
    with pytest.raises(ValidationError, match="below the floor"):
        load_settings(tmp_path)
    # The data dir's env file of a development organisation (demo) lets it through.
    (tmp_path / "daylight.env").write_text("DAYLIGHT_ENVIRONMENT=development\n")
    assert load_settings(tmp_path).argon2.memory_cost_kib == 8


def test_only_prefixed_variables_set_the_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("TIME_COST", "1"), ("MEMORY_COST_KIB", "8"), ("ALLOW_BELOW_FLOOR_FOR_TESTS", "1")):
        monkeypatch.setenv(name, value)
    assert Settings().argon2 == Argon2Cost()
    monkeypatch.setenv("DAYLIGHT_ARGON2__TIME_COST", "4")
    monkeypatch.setenv("DAYLIGHT_ARGON2__MEMORY_COST_KIB", "9216")
    assert Settings().argon2 == Argon2Cost(time_cost=4, memory_cost_kib=9216)


@pytest.mark.parametrize("time_cost", [1, 2, 3, 4, 5, 6, 10])
def test_the_floor_follows_owasps_table(time_cost: int) -> None:
    floor = ARGON2_MEMORY_FLOOR_KIB[min(time_cost, 5)]
    assert (
        settings_with(Argon2Cost(time_cost=time_cost, memory_cost_kib=floor)).argon2.memory_cost_kib == floor
    )
    with pytest.raises(ValidationError, match=f"at least {floor} "):
        settings_with(Argon2Cost(time_cost=time_cost, memory_cost_kib=floor - 1))
    assert ARGON2_MEMORY_FLOOR_KIB == {1: 46 * 1024, 2: 19 * 1024, 3: 12 * 1024, 4: 9 * 1024, 5: 7 * 1024}


def test_development_and_marked_test_costs_are_allowed_below_the_floor() -> None:
    assert settings_with(Argon2Cost(time_cost=1, memory_cost_kib=8), DEVELOPMENT).argon2.time_cost == 1
    assert settings_with(CHEAP_ARGON2).argon2 == CHEAP_ARGON2


def test_the_refusal_never_quotes_the_database_url() -> None:
    with pytest.raises(ValidationError) as refused:
        settings_with(
            Argon2Cost(time_cost=1, memory_cost_kib=8),
            database_url=SecretStr("postgresql+psycopg://daylight:hunter2-secret@db/daylight"),
        )
    assert "hunter2-secret" not in str(refused.value)


def argon2_finding(findings: list[Finding]) -> Finding:
    [finding] = [f for f in findings if f.check == "argon2"]
    return finding


@pytest.mark.parametrize("environment", [PRODUCTION, DEVELOPMENT])
def test_doctor_fails_on_a_cost_below_the_floor_whatever_the_environment(environment: Environment) -> None:
    weak = argon2_finding(check_argon2(settings_with(CHEAP_ARGON2, environment)))
    assert weak.verdict is Verdict.FAIL
    assert "at least 47104" in weak.detail
    assert "DAYLIGHT_ARGON2__MEMORY_COST_KIB" in weak.detail
    default = argon2_finding(check_argon2(settings_with(Argon2Cost(), environment)))
    assert default.verdict is Verdict.OK


@pytest.fixture
def organisation_dir(
    data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    target = data_dir / "org"
    assert cli.main(["init", "--data-dir", str(target)]) == 0
    return target


def test_doctor_on_a_weak_development_deployment_fails_the_argon2_check(
    organisation_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAYLIGHT_ENVIRONMENT", "development")
    monkeypatch.setenv("DAYLIGHT_ARGON2__TIME_COST", "2")
    monkeypatch.setenv("DAYLIGHT_ARGON2__MEMORY_COST_KIB", "16384")
    capsys.readouterr()
    assert cli.main(["doctor", "--data-dir", str(organisation_dir)]) == 1
    output = capsys.readouterr().out
    assert "FAIL  argon2: Argon2id time_cost=2 memory_cost_kib=16384 is below the floor" in output
    assert "at least 19456" in output
    # In production the settings themselves refuse to load: nothing runs on such a cost.
    monkeypatch.setenv("DAYLIGHT_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="at least 19456"):
        cli.main(["doctor", "--data-dir", str(organisation_dir)])


def test_doctor_warns_about_verifiers_of_a_lower_cost_until_their_next_login(organisation_dir: Path) -> None:
    settings = load_settings(organisation_dir)
    server_secrets = load_server_secrets(settings.secrets_dir)
    database = Database.from_settings(settings)
    totp_secret = new_totp_secret()
    try:

        def verifiers() -> Finding:
            [finding] = [f for f in run_checks(settings) if f.check == "password verifiers"]
            return finding

        assert verifiers().verdict is Verdict.OK
        # An account set when the cost was lower (a test cost, so that the test stays fast).
        with database.transaction() as session:
            create_account(
                session,
                username="older-member",
                role=Role.LEAD,
                password="an older passphrase",
                totp_secret=totp_secret,
                settings=settings.model_copy(update={"argon2": CHEAP_ARGON2}),
                server_secrets=server_secrets,
            )
        warning = verifiers()
        assert warning.verdict is Verdict.WARN
        assert warning.detail.startswith("1 account(s) have a verifier derived at a lower Argon2id cost")
        assert "next logs in" in warning.detail

        with database.transaction() as session:
            outcome = authenticate(
                session,
                username="older-member",
                password="an older passphrase",
                otp=pyotp.TOTP(totp_secret).now(),
                settings=settings,
                totp_key=server_secrets.totp_key,
                key_integrity_key=server_secrets.key_integrity_key,
            )
            assert outcome is not None
        assert verifiers().verdict is Verdict.OK
    finally:
        database.engine.dispose()
