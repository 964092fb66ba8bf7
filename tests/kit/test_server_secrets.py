"""Server secrets from the environment (DESIGN 4): the value itself, or a file named by `_FILE`.

The environment wins over the secrets dir; a malformed or ambiguous setting is
refused with the variable named and the value nowhere in the message.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import traceback
from pathlib import Path

import pytest

from app.entrypoints import cli
from app.entrypoints.doctor import Verdict, check_secrets, run_checks
from app.kit.config import Settings, load_settings
from app.kit.server_secrets import (
    SECRET_NAMES,
    InvalidServerSecret,
    SecretsUnavailable,
    ServerSecrets,
    load_server_secrets,
)

PEPPER = "DAYLIGHT_SECRET_RECEIPT_PEPPER"
PEPPER_FILE = "DAYLIGHT_SECRET_RECEIPT_PEPPER_FILE"


def encoded(value: bytes) -> str:
    return base64.b64encode(value).decode()


def private_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def full_text(error: BaseException) -> str:
    """The message, the traceback and any chained exception: everything a log could show."""
    return "".join(traceback.format_exception(error))


def test_an_environment_value_overrides_the_file(
    settings: Settings, server_secrets: ServerSecrets, monkeypatch: pytest.MonkeyPatch
) -> None:
    pepper = os.urandom(32)
    monkeypatch.setenv(PEPPER, encoded(pepper))
    loaded = load_server_secrets(settings.secrets_dir)
    assert loaded.receipt_pepper == pepper != server_secrets.receipt_pepper
    assert loaded.totp_key == server_secrets.totp_key  # the others still come from their files


def test_a_file_named_by_the_environment_is_read_only_if_private(
    settings: Settings, server_secrets: ServerSecrets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pepper = os.urandom(32)
    mounted = private_file(tmp_path / "receipt_pepper", encoded(pepper) + "\n")
    monkeypatch.setenv(PEPPER_FILE, str(mounted))
    assert load_server_secrets(settings.secrets_dir).receipt_pepper == pepper != server_secrets.receipt_pepper
    mounted.chmod(0o640)
    with pytest.raises(PermissionError, match="must be readable by its owner only") as refused:
        load_server_secrets(settings.secrets_dir)
    assert str(mounted) in str(refused.value)
    assert encoded(pepper) not in full_text(refused.value)


@pytest.mark.parametrize(
    "value",
    [
        "CANARY-not-base64-{canary}!",
        "{canary}",  # valid base64 characters, but 24 bytes
        encoded(os.urandom(33)),
        "",
    ],
    ids=["not-base64", "24-bytes", "33-bytes", "empty"],
)
def test_a_malformed_value_is_refused_without_showing_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    value = value.format(canary=secrets.token_hex(16))
    monkeypatch.setenv(PEPPER, value)
    with pytest.raises(InvalidServerSecret, match=PEPPER) as refused:
        load_server_secrets(settings.secrets_dir)
    if value:
        assert value not in full_text(refused.value)


def test_a_malformed_file_named_by_the_environment_is_refused_without_showing_it(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = encoded(os.urandom(16))
    monkeypatch.setenv(PEPPER_FILE, str(private_file(tmp_path / "pepper", content)))
    with pytest.raises(InvalidServerSecret, match=PEPPER_FILE) as refused:
        load_server_secrets(settings.secrets_dir)
    assert content not in full_text(refused.value)


def test_a_value_and_a_file_for_one_secret_are_refused_as_ambiguous(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value, in_file = encoded(os.urandom(32)), encoded(os.urandom(32))
    monkeypatch.setenv(PEPPER, value)
    monkeypatch.setenv(PEPPER_FILE, str(private_file(tmp_path / "pepper", in_file)))
    with pytest.raises(InvalidServerSecret, match="both") as refused:
        load_server_secrets(settings.secrets_dir)
    message = full_text(refused.value)
    assert PEPPER in message
    assert PEPPER_FILE in message
    assert value not in message
    assert in_file not in message


@pytest.mark.parametrize("target", ["relative/pepper", "/nonexistent/daylight/pepper"])
def test_a_file_variable_must_name_an_existing_absolute_path(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    monkeypatch.setenv(PEPPER_FILE, target)
    with pytest.raises(InvalidServerSecret, match=PEPPER_FILE):
        load_server_secrets(settings.secrets_dir)


def test_a_data_dir_without_secrets_loads_them_all_from_the_environment(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {name: os.urandom(32) for name in SECRET_NAMES}
    # Half as values, half as files, as a mixed deployment would have them.
    for index, (name, value) in enumerate(values.items()):
        variable = f"DAYLIGHT_SECRET_{name.upper()}"
        if index % 2:
            monkeypatch.setenv(f"{variable}_FILE", str(private_file(tmp_path / name, encoded(value))))
        else:
            monkeypatch.setenv(variable, encoded(value))
    secrets_dir = data_dir / "secrets"
    assert not secrets_dir.exists()
    assert load_server_secrets(secrets_dir) == ServerSecrets(**values)
    monkeypatch.delenv("DAYLIGHT_SECRET_AUDIT_SIGNING_KEY_FILE")
    with pytest.raises(SecretsUnavailable):  # the one left falls back to the (absent) file
        load_server_secrets(secrets_dir)


def test_doctor_reports_where_an_environment_secret_came_from_and_fails_a_malformed_one(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pepper = encoded(os.urandom(32))
    monkeypatch.setenv(PEPPER, pepper)
    findings = {finding.check: finding for finding in check_secrets(settings)}
    assert findings["secret receipt_pepper"].verdict is Verdict.OK
    assert PEPPER in findings["secret receipt_pepper"].detail
    assert findings["secrets"].verdict is Verdict.OK
    assert pepper not in repr(findings)

    malformed = f"CANARY-{secrets.token_hex(16)}"
    monkeypatch.setenv(PEPPER, malformed)
    findings = {finding.check: finding for finding in check_secrets(settings)}
    assert findings["secret receipt_pepper"].verdict is Verdict.FAIL
    assert PEPPER in findings["secret receipt_pepper"].detail
    assert "base64" in findings["secret receipt_pepper"].detail
    assert malformed not in repr(findings)
    assert "secrets" not in findings


def test_doctor_warns_of_a_misspelt_secret_variable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAYLIGHT_SECRET_RECIEPT_PEPPER", encoded(os.urandom(32)))
    findings = {finding.check: finding for finding in check_secrets(settings)}
    assert findings["secrets env"].verdict is Verdict.WARN
    assert "DAYLIGHT_SECRET_RECIEPT_PEPPER" in findings["secrets env"].detail


def test_an_organisation_whose_secrets_moved_to_the_environment_passes_doctor(
    data_dir: Path,
    committed_database_url: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    monkeypatch.setenv("DAYLIGHT_AUDIT_LOG_ORIGIN", "doctor.test/audit")
    target = data_dir / "org"
    assert cli.main(["init", "--data-dir", str(target)]) == 0
    secrets_dir = target / "secrets"
    values = {name: (secrets_dir / name).read_text().strip() for name in SECRET_NAMES}
    for name, value in values.items():
        monkeypatch.setenv(f"DAYLIGHT_SECRET_{name.upper()}", value)
    shutil.rmtree(secrets_dir)
    seed = str(Path("app/stations/seed/stations-seed.csv").resolve())
    # init's two events (the intake key, the row-MAC backfill) and this import's one.
    assert cli.main(["stations", "import", seed, "--data-dir", str(target), "--apply"]) == 0
    assert cli.main(["audit", "checkpoint", "--data-dir", str(target)]) == 0  # signed with the env key
    capsys.readouterr()

    assert cli.main(["doctor", "--data-dir", str(target)]) == 0
    output = capsys.readouterr().out
    assert "OK    secret audit_signing_key: from the environment variable DAYLIGHT_SECRET_AUDIT" in output
    assert "OK    audit log: 3 events verify and are signed" in output
    assert not any(value in output for value in values.values())

    monkeypatch.setenv("DAYLIGHT_SECRET_TOTP_KEY", values["totp_key"][:-8])
    verdicts = {finding.check: finding.verdict for finding in run_checks(load_settings(target))}
    assert verdicts["secret totp_key"] is Verdict.FAIL
    assert "audit log" not in verdicts  # not run on broken secrets
    assert cli.main(["doctor", "--data-dir", str(target)]) == 1
    assert values["totp_key"][:-8] not in capsys.readouterr().out
