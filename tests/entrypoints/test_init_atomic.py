"""`daylight init` and `demo` are all or nothing, on both databases: a failure at any step leaves
the data dir as it was (or absent) and the database without a table, and a second init, once the
cause is fixed, works. A database or data dir that already holds an organisation is refused
unchanged; an empty schema left by an init from before this was all or nothing is taken."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import inspect

from app.entrypoints import cli, demo, organisation
from app.entrypoints.deployment import IDENTITY_FILE
from app.kit.db import create_database_engine
from app.kit.server_secrets import create_server_secrets
from app.schema import upgrade_to_head

RECOVERY_KEY = re.compile(r"(?:[0-9A-Z]{4}-){7}[0-9A-Z]{4}")


def injected(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("injected failure")


def tables(database_url: str) -> list[str]:
    engine = create_database_engine(database_url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture
def database_url(committed_database_url: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The database init works in, named by DAYLIGHT_DATABASE_URL (SQLite: a file outside the data
    dir, so that its tables can be looked at after a failure removed the data dir)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = committed_database_url or f"sqlite+pysqlite:///{elsewhere / 'daylight.sqlite3'}"
    monkeypatch.setenv("DAYLIGHT_DATABASE_URL", url)
    monkeypatch.delenv("DAYLIGHT_ENV_FILE", raising=False)
    return url


def assert_database_empty(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        # The SQLite file this run created is removed with the rest.
        assert list((tmp_path / "elsewhere").iterdir()) == []
    else:
        assert tables(database_url) == []


FAILING_STEPS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "the migrations": lambda patch: patch.setattr(organisation, "upgrade_to_head", injected),
    "the intake key": lambda patch: patch.setattr(organisation, "create_intake_key", injected),
    "the row-MAC backfill": lambda patch: patch.setattr(organisation, "backfill_row_macs", injected),
    "the identity file": lambda patch: patch.setattr(organisation, "write_identity", injected),
}


@pytest.mark.parametrize("step", FAILING_STEPS)
def test_a_failed_init_leaves_nothing_and_a_second_init_works(
    step: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data_dir = tmp_path / "var" / "org"
    with monkeypatch.context() as patch:
        FAILING_STEPS[step](patch)
        with pytest.raises(RuntimeError, match="injected failure"):
            cli.main(["init", "--data-dir", str(data_dir)])
    assert (
        "daylight: init failed (RuntimeError). Everything it had made was removed" in capsys.readouterr().err
    )
    assert not (tmp_path / "var").exists()  # the parent init made too
    assert_database_empty(database_url, tmp_path)

    assert cli.main(["init", "--data-dir", str(data_dir)]) == 0
    assert RECOVERY_KEY.search(capsys.readouterr().out)
    assert (data_dir / IDENTITY_FILE).is_file()
    assert cli.main(["audit", "verify", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_a_failed_init_leaves_a_data_dir_the_operator_made_as_it_was(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "org"
    data_dir.mkdir(mode=0o700)
    env_file = data_dir / "daylight.env"
    env_file.write_text("# the operator's own\nDAYLIGHT_ENVIRONMENT=production\n")
    (data_dir / "NOTES").write_text("kept\n")
    with monkeypatch.context() as patch:
        patch.setattr(organisation, "create_intake_key", injected)
        with pytest.raises(RuntimeError):
            cli.main(["init", "--data-dir", str(data_dir)])
    assert sorted(path.name for path in data_dir.iterdir()) == ["NOTES", "daylight.env"]
    assert env_file.read_text() == "# the operator's own\nDAYLIGHT_ENVIRONMENT=production\n"
    assert_database_empty(database_url, tmp_path)
    assert cli.main(["init", "--data-dir", str(data_dir)]) == 0


def test_a_failed_demo_leaves_nothing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAYLIGHT_ARGON2__TIME_COST", "1")
    monkeypatch.setenv("DAYLIGHT_ARGON2__MEMORY_COST_KIB", "8")
    data_dir = tmp_path / "demo"
    with monkeypatch.context() as patch:
        # The last step: the accounts and tips are in the database by then.
        patch.setattr(demo, "write_credentials", injected)
        with pytest.raises(RuntimeError):
            cli.main(["demo", "--data-dir", str(data_dir)])
    assert "daylight: demo failed (RuntimeError)" in capsys.readouterr().err
    assert not data_dir.exists()
    assert_database_empty(database_url, tmp_path)
    assert cli.main(["demo", "--data-dir", str(data_dir)]) == 0
    assert (data_dir / "demo-credentials.json").is_file()


def test_an_unreachable_database_fails_init_with_a_message_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAYLIGHT_DATABASE_URL", "postgresql+psycopg://u:secretpw@127.0.0.1:1/test")
    data_dir = tmp_path / "org"
    assert cli.main(["init", "--data-dir", str(data_dir)]) == 1
    captured = capsys.readouterr()
    assert "daylight: database postgresql+psycopg://u@127.0.0.1:1/test\n" in captured.err
    assert "init failed (cannot reach the database postgresql+psycopg://u@127.0.0.1:1/test: " in captured.err
    assert "secretpw" not in captured.out + captured.err
    assert not data_dir.exists()


def test_a_database_with_an_organisation_is_refused_unchanged(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["init", "--data-dir", str(tmp_path / "first")]) == 0
    before = tables(database_url)
    second = tmp_path / "second"
    assert cli.main(["init", "--data-dir", str(second)]) == 1
    assert "daylight: an organisation already exists in the database " in capsys.readouterr().err
    assert not second.exists()
    assert tables(database_url) == before
    # The data dir that has one: refused too, as before.
    assert cli.main(["init", "--data-dir", str(tmp_path / "first")]) == 1
    assert "an organisation already exists in" in capsys.readouterr().err


def test_init_carries_on_in_an_empty_schema_left_by_an_older_init(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)  # what an init that failed at the intake key used to leave
    engine.dispose()
    data_dir = tmp_path / "org"
    assert cli.main(["init", "--data-dir", str(data_dir)]) == 0
    assert cli.main(["audit", "verify", "--data-dir", str(data_dir)]) == 0


def test_a_half_made_data_dir_from_an_older_init_is_explained(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the operator of issue 22 found: secrets/ made, the database without an organisation."""
    data_dir = tmp_path / "org"
    data_dir.mkdir(mode=0o700)
    create_server_secrets(data_dir / "secrets")
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)
    engine.dispose()
    assert cli.main(["init", "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err
    assert f"an organisation already exists in {data_dir} (it has secrets/), but the database " in err
    assert "holds none" in err
    assert "an earlier init failed part-way: then empty the data dir" in err
    assert (data_dir / "secrets").is_dir()  # nothing changed
    for path in (data_dir / "secrets").iterdir():
        path.unlink()
    (data_dir / "secrets").rmdir()
    assert cli.main(["init", "--data-dir", str(data_dir)]) == 0
