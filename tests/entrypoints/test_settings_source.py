"""One source of settings for the service and every command (`--env-file`, DAYLIGHT_ENV_FILE), and
the deployment identity `init` records: settings that point at another database, or name the audit
log otherwise, are refused before anything is opened, with what differs and how to fix it; never
an empty SQLite file, never a false tamper alarm, never a password in the output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url

from app.entrypoints import cli
from app.entrypoints.deployment import IDENTITY_FILE
from app.kit.config import ENV_FILE_VARIABLE, load_settings, settings_from_env_file
from tests.conftest import SKIP_POSTGRES, create_postgres_schema, drop_postgres_schema

ORIGIN = "settings.test/audit"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def daylight(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_FILE_VARIABLE, "DAYLIGHT_DATABASE_URL", "DAYLIGHT_AUDIT_LOG_ORIGIN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def database_url(committed_database_url: str | None, tmp_path: Path) -> str:
    """The deployment's database, never the data dir's own file: a command run without the
    settings file would otherwise find it by default. SQLite: a file elsewhere."""
    return committed_database_url or f"sqlite+pysqlite:///{tmp_path / 'elsewhere' / 'daylight.sqlite3'}"


@dataclass(frozen=True)
class Deployment:
    data_dir: Path
    env_file: Path
    database_url: str


@pytest.fixture
def deployment(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Deployment:
    """An organisation made as docs/deploy.md says: its settings in one file, named by --env-file."""
    (tmp_path / "elsewhere").mkdir()
    env_file = tmp_path / "etc" / "daylight.env"
    env_file.parent.mkdir()
    env_file.write_text(
        "# The deployment's settings\n"
        f"DAYLIGHT_DATABASE_URL={database_url}\n"
        f"DAYLIGHT_AUDIT_LOG_ORIGIN={ORIGIN}\n"
    )
    data_dir = tmp_path / "org"
    created = daylight(capsys, "--env-file", str(env_file), "init", "--data-dir", str(data_dir))
    assert created.code == 0, created.err
    return Deployment(data_dir, env_file, database_url)


def test_every_command_reads_the_env_file_named_by_the_option_or_the_variable(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = str(deployment.data_dir)
    before = dict(os.environ)
    verified = daylight(
        capsys, "--env-file", str(deployment.env_file), "audit", "verify", "--data-dir", data_dir
    )
    assert verified.code == 0, verified.err
    assert verified.out.startswith("ok: ")
    # After the command too, where operators put options.
    purged = daylight(capsys, "purge", "--data-dir", data_dir, "--env-file", str(deployment.env_file))
    assert purged.code == 0, purged.err
    assert purged.out.startswith("purged 0 tips")
    # The file's variables were the command's only: nothing is left in this process's environment.
    assert dict(os.environ) == before

    monkeypatch.setenv(ENV_FILE_VARIABLE, str(deployment.env_file))
    checkpoint = daylight(capsys, "audit", "checkpoint", "--data-dir", data_dir)
    assert checkpoint.code == 0, checkpoint.err
    assert checkpoint.out.startswith(f"{ORIGIN}\n")
    report = daylight(capsys, "doctor", "--data-dir", data_dir)
    assert "OK    database: " in report.out
    assert "FAIL  database" not in report.out


def test_without_the_env_file_commands_refuse_and_create_nothing(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(path.name for path in deployment.data_dir.iterdir())
    for command in (
        ["purge"],
        ["audit", "checkpoint"],
        ["audit", "verify"],
        ["doctor"],
        ["stations", "export"],
    ):
        refused = daylight(capsys, *command, "--data-dir", str(deployment.data_dir))
        assert refused.code == 2, command
        assert "this data dir was created for database" in refused.err
        assert "these settings point at sqlite+pysqlite:///" in refused.err
        assert "--env-file" in refused.err
        assert "DAYLIGHT_DATABASE_URL" in refused.err
        assert "Traceback" not in refused.output
        assert "TAMPERED" not in refused.output
    # No SQLite file made by looking, no identity rewritten.
    assert sorted(path.name for path in deployment.data_dir.iterdir()) == before


def test_a_wrong_audit_origin_is_named_and_never_called_tampering(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DAYLIGHT_AUDIT_LOG_ORIGIN", "someone.else/audit"
    )  # a real variable wins over the file
    for command in (["audit", "verify"], ["audit", "checkpoint"], ["doctor"]):
        refused = daylight(
            capsys, "--env-file", str(deployment.env_file), *command, "--data-dir", str(deployment.data_dir)
        )
        assert refused.code == 2, command
        assert (
            f"audit origin differs: the data dir's log is named '{ORIGIN}', "
            "the settings say 'someone.else/audit'" in refused.err
        )
        assert "The log is not tampered with" in refused.err
        assert f"DAYLIGHT_AUDIT_LOG_ORIGIN={ORIGIN}" in refused.err
        assert "TAMPERED" not in refused.output
        assert "checkpoints are bad" not in refused.output


def test_a_missing_env_file_is_an_error_never_ignored(
    deployment: Deployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = tmp_path / "etc" / "nothing.env"
    for argv in (
        ["--env-file", str(missing), "purge", "--data-dir", str(deployment.data_dir)],
        ["doctor", "--data-dir", str(deployment.data_dir), "--env-file", str(missing)],
        ["--env-file", str(missing), "init", "--data-dir", str(tmp_path / "new")],
    ):
        refused = daylight(capsys, *argv)
        assert refused.code == 2
        assert refused.err == f"daylight: the settings file {missing} does not exist\n"
        assert refused.out == ""
    assert not (tmp_path / "new").exists()
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(missing))
    refused = daylight(capsys, "audit", "verify", "--data-dir", str(deployment.data_dir))
    assert refused.code == 2
    assert f"the settings file {missing} does not exist" in refused.err


def test_an_env_file_that_cannot_be_read_is_an_error(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_file = tmp_path / "etc" / "daylight.env.d"
    not_a_file.mkdir()
    refused = daylight(capsys, "--env-file", str(not_a_file), "purge", "--data-dir", str(deployment.data_dir))
    assert refused.code == 2
    assert refused.err == f"daylight: the settings file {not_a_file} cannot be read: Is a directory\n"
    if os.geteuid() != 0:  # root reads any file
        deployment.env_file.chmod(0)
        refused = daylight(
            capsys, "--env-file", str(deployment.env_file), "purge", "--data-dir", str(deployment.data_dir)
        )
        assert refused.code == 2
        assert "cannot be read by this user" in refused.err


def test_precedence_environment_then_env_file_then_the_data_dirs_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "org"
    data_dir.mkdir()
    env_file = tmp_path / "daylight.env"
    monkeypatch.delenv("DAYLIGHT_STATISTICS_MIN_COUNT", raising=False)
    assert load_settings(data_dir).statistics_min_count == 3
    (data_dir / "daylight.env").write_text("DAYLIGHT_STATISTICS_MIN_COUNT=5\n")
    assert load_settings(data_dir).statistics_min_count == 5
    env_file.write_text("DAYLIGHT_STATISTICS_MIN_COUNT=7\nDAYLIGHT_SECRET_TEST_FILE=/run/x\n")
    with settings_from_env_file(env_file) as used:
        assert used == env_file
        assert load_settings(data_dir).statistics_min_count == 7
        # In the environment itself: the server secrets' loader and the processes `serve`
        # starts read it there.
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.environ['DAYLIGHT_SECRET_TEST_FILE'])"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert child.stdout == "/run/x\n"
    assert "DAYLIGHT_SECRET_TEST_FILE" not in os.environ
    monkeypatch.setenv("DAYLIGHT_STATISTICS_MIN_COUNT", "9")
    with settings_from_env_file(env_file):
        assert load_settings(data_dir).statistics_min_count == 9
    assert os.environ["DAYLIGHT_STATISTICS_MIN_COUNT"] == "9"  # a real variable is left alone
    monkeypatch.delenv("DAYLIGHT_STATISTICS_MIN_COUNT")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(env_file))
    with settings_from_env_file(None) as used:
        assert used == env_file
        assert load_settings(data_dir).statistics_min_count == 7


def test_values_are_taken_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "daylight.env"
    env_file.write_text("DAYLIGHT_DATABASE_URL=postgresql+psycopg://u:pa$word@db/daylight\n")
    monkeypatch.setenv("word", "EXPANDED")
    with settings_from_env_file(env_file):
        url = load_settings(tmp_path).database_url
        assert url is not None
        assert url.get_secret_value() == "postgresql+psycopg://u:pa$word@db/daylight"


def test_init_names_its_database_and_the_next_commands_with_the_env_file(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "elsewhere").mkdir()
    env_file = tmp_path / "daylight.env"
    env_file.write_text(f"DAYLIGHT_DATABASE_URL={database_url}\n")
    data_dir = tmp_path / "org"
    created = daylight(capsys, "--env-file", str(env_file), "init", "--data-dir", str(data_dir))
    assert created.code == 0, created.err
    shown = make_url(database_url).render_as_string(hide_password=False).split("?")[0]
    assert f"daylight: database {shown}" in created.err
    assert f"Database: {shown}" in created.out
    assert "RECOVERY KEY" in created.out
    prefix = f"daylight --env-file {env_file}"
    assert f"{prefix} accounts invite --data-dir {data_dir} --username YOU" in created.out
    assert f"{prefix} accounts confirm LEAD --data-dir {data_dir} --fingerprint" in created.out
    assert f"{prefix} keys grant-first --data-dir {data_dir} --username LEAD" in created.out
    assert f"{prefix} doctor --data-dir {data_dir}" in created.out


@pytest.fixture
def postgres_with_password() -> Iterator[str]:
    """A PostgreSQL URL that carries a password (the test server trusts local connections,
    so the password is never checked, only carried)."""
    if SKIP_POSTGRES:
        pytest.skip("DAYLIGHT_SKIP_POSTGRES=1")
    schema, url = create_postgres_schema("daylight_identity")
    try:
        yield make_url(url).set(password="secretpw").render_as_string(hide_password=False)
    finally:
        drop_postgres_schema(schema)


def test_the_identity_names_the_database_without_its_password(
    postgres_with_password: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "secretpw" in postgres_with_password
    monkeypatch.setenv("DAYLIGHT_DATABASE_URL", postgres_with_password)
    data_dir = tmp_path / "org"
    created = daylight(capsys, "init", "--data-dir", str(data_dir))
    assert created.code == 0, created.err
    identity_file = data_dir / IDENTITY_FILE
    assert stat.S_IMODE(identity_file.stat().st_mode) == 0o600
    identity = json.loads(identity_file.read_text())
    database = identity["database"]
    assert (database["backend"], database["host"], database["port"], database["name"], database["user"]) == (
        "postgresql",
        "127.0.0.1",
        5432,
        "test",
        "postgres",
    )
    assert database["schema"].startswith("daylight_identity_")
    assert identity["audit_log_origin"] == "daylight.local/audit"
    assert created.err.startswith(
        "daylight: database postgresql+psycopg://postgres@127.0.0.1:5432/test (schema "
    )
    checked = daylight(capsys, "audit", "verify", "--data-dir", str(data_dir))
    assert checked.code == 0, checked.err
    # Settings that point elsewhere, with a password of their own: refused, and no password shown.
    monkeypatch.setenv("DAYLIGHT_DATABASE_URL", "postgresql+psycopg://u:secretpw@127.0.0.1/test")
    refused = daylight(capsys, "purge", "--data-dir", str(data_dir))
    assert refused.code == 2
    assert "these settings point at postgresql+psycopg://u@127.0.0.1/test" in refused.err
    monkeypatch.delenv("DAYLIGHT_DATABASE_URL")
    refused_sqlite = daylight(capsys, "audit", "verify", "--data-dir", str(data_dir))
    assert refused_sqlite.code == 2
    assert (
        "this data dir was created for database postgresql+psycopg://postgres@127.0.0.1:5432/test (schema "
        in refused_sqlite.err
    )
    assert f"these settings point at sqlite+pysqlite:///{data_dir / 'daylight.sqlite3'}" in refused_sqlite.err
    assert not (data_dir / "daylight.sqlite3").exists()
    for text in (
        identity_file.read_text(),
        created.output,
        checked.output,
        refused.output,
        refused_sqlite.output,
    ):
        assert "secretpw" not in text


def test_a_data_dir_from_before_identity_files_is_accepted_and_recorded(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    identity_file = deployment.data_dir / IDENTITY_FILE
    recorded = json.loads(identity_file.read_text())
    identity_file.unlink()
    # Wrong settings find no organisation (and make no file): nothing is recorded for them.
    refused = daylight(capsys, "audit", "verify", "--data-dir", str(deployment.data_dir))
    assert refused.code == 2
    assert "no Daylight organisation in this database" in refused.err
    assert not identity_file.exists()
    assert not (deployment.data_dir / "daylight.sqlite3").exists()
    # The deployment's settings: accepted, and recorded from then on.
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(deployment.env_file))
    verified = daylight(capsys, "audit", "verify", "--data-dir", str(deployment.data_dir))
    assert verified.code == 0, verified.err
    assert json.loads(identity_file.read_text()) == recorded
    assert stat.S_IMODE(identity_file.stat().st_mode) == 0o600
    monkeypatch.delenv(ENV_FILE_VARIABLE)
    assert daylight(capsys, "audit", "verify", "--data-dir", str(deployment.data_dir)).code == 2


def test_a_copied_data_dir_with_its_own_sqlite_file_is_still_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "org"
    assert daylight(capsys, "init", "--data-dir", str(source)).code == 0
    copy = tmp_path / "moved"
    source.rename(copy)
    verified = daylight(capsys, "audit", "verify", "--data-dir", str(copy))
    assert verified.code == 0, verified.err
    assert verified.err.startswith(f"daylight: database sqlite+pysqlite:///{copy / 'daylight.sqlite3'}\n")
