"""The sender under the failures a review named: one bad delivery among good ones, a lease that
runs out mid-run, counts arriving for a batch being sent, a node without a mail server, a backlog
larger than one sweep, and restricted cases kept to their members. Both databases."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.intake.models import Tip
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from app.notify import channels, preferences, reminders
from app.notify.models import ClockReminder, NotificationDelivery, NotificationPreference
from app.notify.sender import (
    LEASE_SECONDS,
    PERMANENT_ATTEMPTS,
    UNEXPECTED_FAILURE,
    NotificationSender,
    NotifyReport,
)
from app.outbox import events as outbox
from app.outbox.models import Audience, NoticeKind
from tests.auth.factories import StaffMember
from tests.cases.factories import seeded_case
from tests.conftest import Organisation
from tests.intake.factories import make_tip
from tests.notify.conftest import Clock, RecordingSmtpServer, RecordingWebhookReceiver
from tests.notify.test_delivery import opt_in, submit, text_of


def recipients(smtp: RecordingSmtpServer) -> list[str]:
    return sorted(recipient for mail in smtp.messages for recipient in mail.recipients)


def test_one_bad_delivery_never_stops_the_others_and_is_parked_then_retried(
    db_session: Session,
    organisation: Organisation,
    settings: Settings,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    signed_in: Callable[[StaffMember], TestClient],
    mail_sender: NotificationSender,
) -> None:
    caseworker, lead = organisation[Role.CASEWORKER], organisation[Role.LEAD]
    opt_in(db_session, caseworker, "caseworker@staff.example", server_secrets)
    opt_in(db_session, lead, "lead@staff.example", server_secrets)
    # A key that no longer reads (a database writer, or a damaged row): the send fails for good.
    db_session.get_one(NotificationPreference, lead.account.id).openpgp_key = "-----BEGIN PGP junk"
    db_session.commit()
    submit(intake_client, urgent=True)
    mail_sender.run_once()
    for attempt in range(1, PERMANENT_ATTEMPTS + 1):
        clock.advance(seconds=60 * 2**attempt)
        report = mail_sender.run_once()
        assert report.failed == 1
    assert recipients(smtp_server) == ["caseworker@staff.example"]
    parked = db_session.scalars(
        select(NotificationDelivery).where(NotificationDelivery.parked.is_(True))
    ).all()
    assert [row.recipient_id for row in parked] == [lead.account.id]
    assert parked[0].last_error == "member's OpenPGP key not usable"
    page = signed_in(organisation[Role.ADMIN]).get("/admin/notifications").text
    assert "data-parked" in page
    assert "not tried again: needs action" in page
    clock.advance(hours=5)
    assert mail_sender.run_once().failed == 0  # parked: not tried again on its own
    # The member fixes their settings: the parked notice goes out.
    opt_in(db_session, lead, "lead@staff.example", server_secrets)
    clock.advance(seconds=1)
    assert mail_sender.run_once().sent == 1
    assert recipients(smtp_server).count("lead@staff.example") == 1


def test_an_unexpected_error_is_recorded_and_the_rest_still_go(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    mail_sender: NotificationSender,
) -> None:
    opt_in(db_session, organisation[Role.CASEWORKER], "caseworker@staff.example", server_secrets)
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    real_send = channels.send_mail

    def send_or_break(server: channels.MailServer, *, recipient: str, **rest: object) -> None:
        if recipient.startswith("lead@"):
            raise UnicodeEncodeError("ascii", "ö", 0, 1, "a bug")
        real_send(server, recipient=recipient, **rest)  # type: ignore[arg-type]

    monkeypatch.setattr(channels, "send_mail", send_or_break)
    submit(intake_client, urgent=True)
    mail_sender.run_once()
    clock.advance(seconds=60)
    report = mail_sender.run_once()
    assert (report.sent, report.failed) == (1, 1)
    assert recipients(smtp_server) == ["caseworker@staff.example"]
    failure = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "notify.failed")).one()
    assert json.loads(failure.details)["reason"] == UNEXPECTED_FAILURE


def test_a_lease_that_ran_out_mid_run_is_not_used(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    sender_for: Callable[[Settings], NotificationSender],
    clock: Clock,
    mail_settings: Settings,
) -> None:
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    submit(intake_client, urgent=True)
    slow, cron = (
        sender_for(mail_settings),
        sender_for(mail_settings),
    )
    slow.run_once()
    clock.advance(seconds=60)
    (held,) = slow.claim_due()
    clock.advance(seconds=LEASE_SECONDS + 1)  # the slow sender is still busy with others
    assert cron.claim_due() == [held]  # the lease ran out: another sender takes the delivery
    slow.deliver(held, NotifyReport())  # the slow one comes back to it: not its lease any more
    assert smtp_server.messages == []
    cron.deliver(held, NotifyReport())
    assert recipients(smtp_server) == ["lead@staff.example"]


def test_counts_for_a_batch_being_sent_go_out_in_its_next_generation(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    database: Database,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    mail_settings: Settings,
) -> None:
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    mail = mail_settings
    sender = NotificationSender(database, mail, server_secrets.key_integrity_key, now=clock)
    outbox.notify(db_session, NoticeKind.OVERDUE, Audience.LEADS, count=2)
    db_session.commit()
    sender.run_once()
    clock.advance(seconds=60)
    (held,) = sender.claim_due()
    # Another node whose clock is behind fans out into the same batch while it is being sent.
    behind = Clock()
    behind.moment = clock.moment - dt.timedelta(seconds=59)
    lagging = NotificationSender(database, mail, server_secrets.key_integrity_key, now=behind)
    outbox.notify(db_session, NoticeKind.OVERDUE, Audience.LEADS, count=3)
    db_session.commit()
    lagging.run_once()
    sender.deliver(held, NotifyReport())
    clock.advance(seconds=60)
    sender.run_once()
    bodies = sorted(text_of(mail.message).split("\n")[0] for mail in smtp_server.messages)
    assert bodies == [
        "2 reports passed their response deadline.",
        "3 reports passed their response deadline.",
    ]


def test_a_node_without_a_mail_server_leaves_mail_for_one_that_has_it(
    db_session: Session,
    organisation: Organisation,
    settings: Settings,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    sender_for: Callable[[Settings], NotificationSender],
    clock: Clock,
    mail_sender: NotificationSender,
) -> None:
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    submit(intake_client, urgent=True)
    mailless = sender_for(settings)
    mailless.run_once()
    clock.advance(seconds=60)
    report = mailless.run_once()
    assert (report.sent, report.dropped) == (0, 0)
    assert db_session.scalar(select(func.count()).select_from(NotificationDelivery)) == 1
    assert mail_sender.run_once().sent == 1
    assert recipients(smtp_server) == ["lead@staff.example"]


def test_a_backlog_larger_than_one_sweep_is_worked_through(
    db_session: Session,
    organisation: Organisation,
    settings: Settings,
    server_secrets: ServerSecrets,
    sender_for: Callable[[Settings], NotificationSender],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reminders, "SWEEP_LIMIT", 2)
    for _ in range(5):
        tip_id, _ = make_tip(db_session, server_secrets)
        db_session.get_one(Tip, tip_id).received_on = clock.moment.date() - dt.timedelta(days=30)
    db_session.commit()
    sender = sender_for(settings)
    swept = [sender.run_once().reminders for _ in range(4)]
    assert swept == [2, 2, 1, 0]
    assert sender.run_once().reminders == 0  # the day is done
    assert db_session.scalar(select(func.count()).select_from(ClockReminder)) == 5


def test_a_restricted_case_is_told_to_its_members_only(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    webhook_receiver: RecordingWebhookReceiver,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    signed_in: Callable[[StaffMember], TestClient],
    mail_sender: NotificationSender,
) -> None:
    case_id, dublin = seeded_case(signed_in, organisation, db_session, server_secrets, restricted=True)
    preferences.save_organisation_channels(
        db_session,
        audit.SYSTEM,
        email_enabled=True,
        webhook_url=webhook_receiver.url,
        digest_hours=24,
        new_signing_key=True,
        integrity_key=server_secrets.key_integrity_key,
    )
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    opt_in(db_session, organisation[Role.CASEWORKER], "caseworker@staff.example", server_secrets)
    mail_sender.run_once()  # what the case's creation queued
    proposed = signed_in(organisation[Role.CASEWORKER]).post(
        f"/api/v1/cases/{case_id}/stations",
        json={
            "station_id": str(dublin.id),
            "relation": "contacted_via",
            "confidence": "medium",
            "evidence": "e",
        },
    )
    assert proposed.status_code == 201, proposed.text
    tip_id = db_session.scalars(select(Tip.id)).one()
    outbox.notify(db_session, NoticeKind.SUBMITTER_ANSWERED, Audience.KEY_HOLDERS, audience_id=tip_id)
    db_session.commit()
    webhook_receiver.requests.clear()
    mail_sender.run_once()
    clock.advance(seconds=60)
    mail_sender.run_once()
    # The lead is no member of the restricted case: neither the proposal nor the answer reach them,
    # and the organisation's room hears nothing of either.
    assert "lead@staff.example" not in recipients(smtp_server), [
        text_of(m.message) for m in smtp_server.messages
    ]
    assert webhook_receiver.requests == []
