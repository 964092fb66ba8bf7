"""`daylight notify --data-dir DIR` (DESIGN 8) on both databases, and two senders at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.audit_log import events as audit
from app.auth.models import Role
from app.entrypoints import cli
from app.entrypoints.organisation import init_organisation
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import SECRET_NAMES, load_server_secrets
from app.notify.models import DeliveryMode
from app.notify.preferences import save_member_preferences
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from tests.auth.factories import make_member
from tests.conftest import CHEAP_ARGON2
from tests.notify.conftest import RecordingSmtpServer
from tests.notify.test_delivery import text_of


def deployment_with_leads(data_dir: Path, database_url: str | None, leads: int) -> list[str]:
    """An organisation whose leads want notices, and one reminder for them in the outbox."""
    settings = Settings(
        data_dir=data_dir, argon2=CHEAP_ARGON2, database_url=SecretStr(database_url) if database_url else None
    )
    database = Database.from_settings(settings)
    try:
        init_organisation(settings, database)
        secrets = load_server_secrets(settings.secrets_dir, SECRET_NAMES)
        addresses = []
        with database.transaction() as session:
            for number in range(leads):
                lead = make_member(session, settings, secrets, Role.LEAD)
                address = f"lead{number}@staff.example"
                save_member_preferences(
                    session,
                    audit.SYSTEM,
                    lead.account.id,
                    enabled=True,
                    mode=DeliveryMode.IMMEDIATE,
                    address=address,
                    openpgp_key="",
                    integrity_key=secrets.key_integrity_key,
                )
                addresses.append(address)
            outbox.notify(session, NoticeKind.OVERDUE, Audience.LEADS, count=3)
    finally:
        database.engine.dispose()
    return addresses


@pytest.fixture
def mail_environment(
    smtp_server: RecordingSmtpServer, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    variables = {
        "DAYLIGHT_SMTP_URL": smtp_server.url,
        "DAYLIGHT_MAIL_FROM": "notices@daylight.example",
        "DAYLIGHT_NOTIFY_BATCH_SECONDS": "1",
    }
    if committed_database_url:
        variables["DAYLIGHT_DATABASE_URL"] = committed_database_url
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


def test_notify_delivers_pending_notices_once(
    data_dir: Path,
    committed_database_url: str | None,
    mail_environment: dict[str, str],
    smtp_server: RecordingSmtpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployment_with_leads(data_dir, committed_database_url, leads=1)
    assert cli.main(["notify", "--data-dir", str(data_dir)]) == 0
    assert "notify: 1 events and 0 reminders queued; 0 notices sent" in capsys.readouterr().out
    time.sleep(1.1)  # the batch of one second closes
    assert cli.main(["notify", "--data-dir", str(data_dir)]) == 0
    assert "0 events and 0 reminders queued; 1 notices sent, 0 failed" in capsys.readouterr().out
    (mail,) = smtp_server.messages
    assert mail.recipients == ["lead0@staff.example"]
    assert text_of(mail.message).startswith("3 reports passed their response deadline.\n/tips\n\n")
    assert cli.main(["notify", "--data-dir", str(data_dir)]) == 0
    assert len(smtp_server.messages) == 1


def test_notify_fails_loudly_and_keeps_the_notice_while_the_server_is_down(
    data_dir: Path,
    committed_database_url: str | None,
    mail_environment: dict[str, str],
    smtp_server: RecordingSmtpServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deployment_with_leads(data_dir, committed_database_url, leads=1)
    smtp_server.stop()
    assert cli.main(["notify", "--data-dir", str(data_dir)]) == 0
    time.sleep(1.1)
    assert cli.main(["notify", "--data-dir", str(data_dir)]) == 1
    assert "0 notices sent, 1 failed (tried again later)" in capsys.readouterr().out


def test_two_senders_at_once_deliver_each_notice_once(
    data_dir: Path,
    committed_database_url: str | None,
    mail_environment: dict[str, str],
    smtp_server: RecordingSmtpServer,
) -> None:
    addresses = deployment_with_leads(data_dir, committed_database_url, leads=6)
    assert cli.main(["notify", "--data-dir", str(data_dir)]) == 0  # fan-out: six deliveries
    time.sleep(1.1)
    environment = {**os.environ, **mail_environment}
    senders = [
        subprocess.Popen(
            [sys.executable, "-m", "app", "notify", "--data-dir", str(data_dir)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [sender.communicate(timeout=120) for sender in senders]
    assert [sender.returncode for sender in senders] == [0, 0], outputs
    delivered = sorted(recipient for mail in smtp_server.messages for recipient in mail.recipients)
    assert delivered == sorted(addresses)
