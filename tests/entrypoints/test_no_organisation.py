"""Commands against a database without an organisation (the wrong settings, or no init yet), on
both databases: a clear message and a non-zero exit, never a traceback ('no such table'), and
never a SQLite file created by looking."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.entrypoints import cli
from app.kit.db import create_database_engine
from app.schema import upgrade_to_head

NO_ORGANISATION = "no Daylight organisation in this database ("
COMMANDS = (
    ["purge"],
    ["audit", "checkpoint"],
    ["audit", "verify"],
    ["audit", "export"],
    ["accounts", "invite", "--username", "someone"],
    ["stations", "export"],
)


@pytest.fixture
def empty_data_dir(
    data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.delenv("DAYLIGHT_ENV_FILE", raising=False)
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    else:
        monkeypatch.delenv("DAYLIGHT_DATABASE_URL", raising=False)
    return data_dir


def postgres_tables(database_url: str) -> list[str]:
    engine = create_database_engine(database_url)
    try:
        return inspect(engine).get_table_names()
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_a_command_on_a_database_without_an_organisation_says_so(
    command: list[str],
    empty_data_dir: Path,
    committed_database_url: str | None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    capsys.readouterr()
    code = cli.main([*command, "--data-dir", str(empty_data_dir)])  # raises nothing
    captured = capsys.readouterr()
    assert code == 2
    assert NO_ORGANISATION in captured.err
    assert "run `daylight init --data-dir" in captured.err
    assert "or point --env-file at the right settings" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    assert list(empty_data_dir.iterdir()) == []  # no SQLite file, no identity
    if committed_database_url:
        assert postgres_tables(committed_database_url) == []


def test_doctor_on_a_database_without_an_organisation_fails_and_creates_nothing(
    empty_data_dir: Path, committed_database_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert cli.main(["doctor", "--data-dir", str(empty_data_dir)]) == 1
    output = capsys.readouterr().out
    assert f"FAIL  database: {NO_ORGANISATION}" in output
    assert "run `daylight init --data-dir" in output
    assert list(empty_data_dir.iterdir()) == []
    if committed_database_url:
        assert postgres_tables(committed_database_url) == []


def test_an_empty_migrated_schema_is_no_organisation_either(
    empty_data_dir: Path, committed_database_url: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    url = committed_database_url or f"sqlite+pysqlite:///{empty_data_dir / 'daylight.sqlite3'}"
    engine = create_database_engine(url)
    upgrade_to_head(engine)
    engine.dispose()
    capsys.readouterr()
    assert cli.main(["purge", "--data-dir", str(empty_data_dir)]) == 2
    assert NO_ORGANISATION in capsys.readouterr().err
    assert cli.main(["doctor", "--data-dir", str(empty_data_dir)]) == 1
    assert f"FAIL  database: {NO_ORGANISATION}" in capsys.readouterr().out
