"""Response clocks on both databases: overdue reports and purges to come show in the queue, leads
are reminded once per report and deadline, and a submitter's message defers the purge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.intake.models import Tip, TipStatus
from app.kit.blobs import BlobStore
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from app.notify.sender import NotificationSender
from app.triage import clocks, retention
from tests.auth.factories import StaffMember
from tests.conftest import Organisation
from tests.notify.conftest import Clock, RecordingSmtpServer
from tests.notify.test_delivery import opt_in, submit, text_of


def only_tip(session: Session) -> Tip:
    session.expire_all()
    return session.scalars(select(Tip)).one()


def test_an_overdue_report_is_marked_and_leads_are_reminded_once(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    signed_in: Callable[[StaffMember], TestClient],
    mail_sender: NotificationSender,
) -> None:
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    opt_in(db_session, organisation[Role.CASEWORKER], "caseworker@staff.example", server_secrets)
    submit(intake_client, urgent=True)
    mail_sender.run_once()
    clock.advance(seconds=60)
    assert mail_sender.run_once().sent == 2  # the urgent report's own notice, to both key holders
    smtp_server.messages.clear()
    queue = signed_in(organisation[Role.LEAD])
    assert 'data-clock="claim"' not in queue.get("/tips").text
    tip = only_tip(db_session)
    tip.received_on = clock.moment.date() - dt.timedelta(days=2)  # urgent: to be claimed within a day
    db_session.commit()
    assert 'data-clock="claim"' in queue.get("/tips").text
    # Clocks count whole days: the sender sweeps them once a day, so the next day's first run.
    clock.advance(days=1)
    mail_sender.run_once()
    clock.advance(seconds=60)
    assert mail_sender.run_once().sent == 1  # the lead only: reminders are for leads
    (mail,) = smtp_server.messages
    assert mail.recipients == ["lead@staff.example"]
    assert text_of(mail.message).startswith(
        "1 report passed its response deadline.\nhttps://testserver/tips\n\n"
    )
    clock.advance(days=1)
    again = mail_sender.run_once()
    assert (again.reminders, again.events) == (0, 0)  # the same report and deadline: never twice
    assert queue.post(f"/api/v1/tips/{tip.id}/claim").status_code == 200
    assert 'data-clock="claim"' not in queue.get("/tips").text


def test_a_purge_is_announced_and_a_submitter_message_defers_it(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    sender_for: Callable[[Settings], NotificationSender],
    clock: Clock,
    signed_in: Callable[[StaffMember], TestClient],
    mail_settings: Settings,
) -> None:
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    receipt = submit(intake_client, urgent=False)
    settings = mail_settings
    today = clock.moment.date()
    tip = only_tip(db_session)
    # Nobody took it out of `new`: purged after retention_stale_new_days; warned 10 days before.
    tip.received_on = tip.last_activity_on = today - dt.timedelta(days=settings.retention_stale_new_days - 10)
    db_session.commit()
    purge_day = clocks.purge_on(TipStatus.NEW.value, tip.last_activity_on, settings)
    assert purge_day == today + dt.timedelta(days=11)
    page = signed_in(organisation[Role.LEAD]).get("/tips").text
    assert f'data-clock="retention">deleted on <time datetime="{purge_day}">' in page
    sender = sender_for(settings)
    sender.run_once()
    clock.moment = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(0, 0, 1), dt.UTC)
    sender.run_once()
    # The day's digest (the new report) and the reminder; left in new that long, it is overdue too.
    digest, reminder = sorted(text_of(mail.message) for mail in smtp_server.messages)
    assert digest.startswith("1 new report arrived.")
    assert reminder.startswith(
        "1 report passed its response deadline.\nhttps://testserver/tips\n\n"
        "1 report will soon be deleted by the retention policy.\nhttps://testserver/tips?sort=oldest\n\n"
    )
    # The submitter writes: the clock starts again, the warning goes and the purge day passes safely.
    assert (
        intake_client.post(
            "/api/v1/followup/messages", json={"receipt": receipt, "body": "still here"}
        ).status_code
        == 201
    )
    tip = only_tip(db_session)
    assert tip.last_activity_on == today
    assert 'data-clock="retention"' not in signed_in(organisation[Role.LEAD]).get("/tips").text
    retention.purge_expired(db_session, settings, BlobStore(settings.blobs_dir), today=purge_day)
    db_session.commit()
    assert only_tip(db_session).id == tip.id


def test_the_purge_day_shown_is_the_day_the_purge_deletes(
    db_session: Session, organisation: Organisation, settings: Settings, intake_client: TestClient
) -> None:
    submit(intake_client, urgent=False)
    tip = only_tip(db_session)
    tip.status = TipStatus.REJECTED
    tip.last_activity_on = dt.date(2026, 1, 10)
    db_session.commit()
    purge_day = clocks.purge_on(TipStatus.REJECTED.value, tip.last_activity_on, settings)
    assert purge_day is not None
    blobs = BlobStore(settings.blobs_dir)
    assert (
        retention.purge_expired(db_session, settings, blobs, today=purge_day - dt.timedelta(days=1)).tip_ids
        == []
    )
    assert retention.purge_expired(db_session, settings, blobs, today=purge_day).tip_ids == [tip.id]
