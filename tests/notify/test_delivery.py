"""Notices end to end on both databases: a real SMTP server and webhook receiver, real reports.

Every delivered byte (headers and bodies of mail, webhook bodies) is searched for canaries planted
in the report: its text, city, country, tactic, language, station and receipt. The notice text
is asserted word for word.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
import uuid
from collections.abc import Callable
from email.message import EmailMessage

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.intake.models import Tip
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from app.notify import preferences
from app.notify.channels import webhook_signature
from app.notify.models import MEMBER_ADDRESS, DeliveryMode, NotificationDelivery, NotificationPreference
from app.notify.sender import NotificationSender
from app.outbox.models import NotificationEvent
from app.stations.models import Station, StationStatus
from tests.auth.factories import StaffMember
from tests.conftest import Organisation
from tests.notify.conftest import (
    START,
    Clock,
    OpenPgpMemberKey,
    RecordingSmtpServer,
    RecordingWebhookReceiver,
)

CANARIES = {
    "narrative": "Canary narrative: my brother in Kashgar was visited by officers 7731.",
    "city": "Zzyzxcanaryburg",
    "station_city": "Qwvcanaryport",
    "station_bureau": "Canary Bureau 5512",
}


def opt_in(
    session: Session,
    member: StaffMember,
    address: str,
    secrets: ServerSecrets,
    mode: DeliveryMode = DeliveryMode.IMMEDIATE,
) -> None:
    preferences.save_member_preferences(
        session,
        audit.SYSTEM,
        member.account.id,
        enabled=True,
        mode=mode,
        address=address,
        openpgp_key="",
        integrity_key=secrets.key_integrity_key,
    )
    session.commit()


def canary_station(session: Session) -> uuid.UUID:
    station = Station(
        city=CANARIES["station_city"],
        city_key=CANARIES["station_city"].lower(),
        country="IE",
        operating_bureau=CANARIES["station_bureau"],
        status=StationStatus.REPORTED,
        latitude=53.3,
        longitude=-6.3,
    )
    session.add(station)
    session.commit()
    return station.id


def submit(intake: TestClient, *, urgent: bool, station_id: uuid.UUID | None = None) -> str:
    response = intake.post(
        "/api/v1/tips",
        json={
            "narrative": CANARIES["narrative"],
            "language": "ug",
            "tactics": ["family_pressure", "persuade_to_return"],
            "host_country": "IE",
            "host_city": CANARIES["city"],
            "urgent": urgent,
            **({"station_id": str(station_id)} if station_id else {}),
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["receipt"])


def assert_content_free(delivered: bytes, receipts: list[str]) -> None:
    text = delivered.decode("utf-8", "replace")
    for name, canary in CANARIES.items():
        assert canary not in text, name
    for word in ("Kashgar", "7731", "Ireland", "Dublin", "family", "persuade", "Uyghur", "ug", "IE"):
        assert not re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE), word
    for receipt in receipts:
        assert receipt not in text
        assert receipt.replace("-", "") not in text.replace("-", "")


def text_of(message: EmailMessage) -> str:
    """The body as written: SMTP carries lines ending in CRLF."""
    return str(message.get_content()).replace("\r\n", "\n")


URGENT_BODY = (
    "1 urgent report arrived.\nhttps://testserver/tips\n\n"
    "This notice carries no report content. Sign in to Daylight to read it.\n"
    "To change or stop these notices: https://testserver/account/notifications\n"
)


def test_an_urgent_report_mails_each_key_holder_once_and_nothing_of_it(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    mail_sender: NotificationSender,
) -> None:
    for role in Role:  # admins and auditors opt in too: they still hear nothing of reports
        opt_in(db_session, organisation[role], f"{role.value}@staff.example", server_secrets)
    station_id = canary_station(db_session)
    receipts = [submit(intake_client, urgent=True, station_id=station_id)]

    first = mail_sender.run_once()
    assert (first.events, first.sent) == (1, 0)  # batched: due at the end of the minute
    assert smtp_server.messages == []
    clock.advance(seconds=60)
    second = mail_sender.run_once()
    assert second.sent == 2
    assert sorted(mail.recipients[0] for mail in smtp_server.messages) == [
        "caseworker@staff.example",
        "lead@staff.example",
    ]
    for mail in smtp_server.messages:
        message = mail.message
        assert message["Subject"] == "Daylight: urgent report"
        assert message["From"] == "notices@daylight.example"
        assert text_of(message) == URGENT_BODY
        assert_content_free(mail.raw, receipts)
    # Never twice: the deliveries are gone, and another run sends nothing.
    clock.advance(hours=2)
    assert mail_sender.run_once().sent == 0
    assert len(smtp_server.messages) == 2
    assert db_session.scalar(select(func.count()).select_from(NotificationDelivery)) == 0
    assert db_session.scalar(select(func.count()).select_from(NotificationEvent)) == 0


def test_ordinary_reports_collect_in_the_digest(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    mail_sender: NotificationSender,
) -> None:
    opt_in(db_session, organisation[Role.LEAD], "lead@staff.example", server_secrets)
    receipts = [submit(intake_client, urgent=False) for _ in range(3)]
    mail_sender.run_once()
    clock.advance(minutes=5)
    assert mail_sender.run_once().sent == 0  # not an immediate notice
    receipts.append(submit(intake_client, urgent=False))
    clock.advance(hours=3)
    mail_sender.run_once()
    assert smtp_server.messages == []
    # The daily digest is due at midnight UTC.
    clock.moment = dt.datetime.combine(START.date() + dt.timedelta(days=1), dt.time(0, 0, 1), dt.UTC)
    assert mail_sender.run_once().sent == 1
    (mail,) = smtp_server.messages
    assert mail.message["Subject"] == "Daylight digest"
    assert text_of(mail.message).startswith("4 new reports arrived.\nhttps://testserver/tips\n\n")
    assert_content_free(mail.raw, receipts)


def test_the_webhook_is_signed_and_content_free(
    db_session: Session,
    organisation: Organisation,
    settings: Settings,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    webhook_receiver: RecordingWebhookReceiver,
    sender_for: Callable[[Settings], NotificationSender],
    clock: Clock,
) -> None:
    receiver = webhook_receiver
    preferences.save_organisation_channels(
        db_session,
        audit.SYSTEM,
        email_enabled=True,
        webhook_url=receiver.url,
        digest_hours=24,
        new_signing_key=True,
        integrity_key=server_secrets.key_integrity_key,
    )
    db_session.commit()
    signing_key = preferences.organisation_channels(
        db_session, server_secrets.key_integrity_key
    ).webhook_signing_key
    assert signing_key is not None
    receipts = [submit(intake_client, urgent=True, station_id=canary_station(db_session))]
    sender = sender_for(settings)  # no mail server: the webhook alone
    sender.run_once()
    clock.advance(seconds=60)
    assert sender.run_once().sent == 1
    (request,) = receiver.requests
    payload = json.loads(request.body)
    assert payload["counts"] == {"urgent_report": 1}
    assert payload["text"] == URGENT_BODY
    timestamp = int(request.headers["daylight-signature"].split(",")[0].removeprefix("t="))
    assert hmac.compare_digest(
        request.headers["daylight-signature"], webhook_signature(signing_key, timestamp, request.body)
    )
    assert request.headers["idempotency-key"] == payload["id"]
    assert_content_free(request.body + str(dict(request.headers)).encode(), receipts)


def test_a_mail_server_that_is_down_loses_nothing_and_the_admin_sees_it(
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
    submit(intake_client, urgent=True)
    smtp_server.stop()
    mail_sender.run_once()
    clock.advance(seconds=60)
    down = mail_sender.run_once()
    assert (down.sent, down.failed) == (0, 1)
    failure = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "notify.failed")).one()
    details = json.loads(failure.details)
    assert (details["channel"], details["attempts"]) == ("email", 1)
    assert "lead@staff.example" not in failure.details
    page = signed_in(organisation[Role.ADMIN]).get("/admin/notifications")
    assert page.status_code == 200
    assert (
        "Notices waiting to be sent: 1. Of these, failed at least once and to be tried again: 1." in page.text
    )
    assert details["reason"] in page.text
    # Backing off: not tried again at once.
    clock.advance(seconds=30)
    assert mail_sender.run_once().failed == 0
    smtp_server.start()
    clock.advance(seconds=31)
    back = mail_sender.run_once()
    assert (back.sent, back.failed) == (1, 0)
    assert [mail.recipients for mail in smtp_server.messages] == [["lead@staff.example"]]
    assert text_of(smtp_server.messages[0].message) == URGENT_BODY


def test_staff_events_reach_the_right_members(
    db_session: Session,
    organisation: Organisation,
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
    receipt = submit(intake_client, urgent=False)
    mail_sender.run_once()  # the new report, for the digest
    tip_id = db_session.scalars(select(Tip.id)).one()
    lead_client = signed_in(lead)
    assert (
        lead_client.post(
            f"/api/v1/tips/{tip_id}/assign", json={"assignee_id": str(caseworker.account.id)}
        ).status_code
        == 200
    )
    assert (
        intake_client.post("/api/v1/followup/messages", json={"receipt": receipt, "body": "more"}).status_code
        == 201
    )
    assert signed_in(caseworker).post(f"/api/v1/tips/{tip_id}/verification").status_code == 200
    clock.advance(seconds=1)
    mail_sender.run_once()
    clock.advance(seconds=60)
    assert mail_sender.run_once().sent == 2
    by_recipient = {mail.recipients[0]: text_of(mail.message) for mail in smtp_server.messages}
    assert by_recipient["caseworker@staff.example"].startswith(
        "1 message from a submitter arrived.\nhttps://testserver/tips\n\n"
        "1 report was assigned to you.\nhttps://testserver/tips?mine=true\n\n"
    )
    assert by_recipient["lead@staff.example"].startswith(
        "1 proposal waits for a second person.\nhttps://testserver/tips\n\nThis notice"
    )
    for mail in smtp_server.messages:
        assert_content_free(mail.raw, [receipt])


def test_addresses_are_sealed_in_the_database(
    db_session: Session, organisation: Organisation, server_secrets: ServerSecrets
) -> None:
    opt_in(db_session, organisation[Role.LEAD], "very-identifiable@staff.example", server_secrets)
    row = db_session.get_one(NotificationPreference, organisation[Role.LEAD].account.id)
    assert row.address_encrypted is not None
    assert b"very-identifiable" not in row.address_encrypted
    other = organisation[Role.CASEWORKER].account.id
    # Moved to another member's row, it does not open.
    assert (
        preferences.open_address(
            server_secrets.key_integrity_key,
            MEMBER_ADDRESS,
            str(other),
            row.address_encrypted,
        )
        is None
    )


def test_a_member_with_an_openpgp_key_gets_only_ciphertext(
    db_session: Session,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    intake_client: TestClient,
    smtp_server: RecordingSmtpServer,
    clock: Clock,
    openpgp_member_key: OpenPgpMemberKey,
    mail_sender: NotificationSender,
) -> None:
    preferences.save_member_preferences(
        db_session,
        audit.SYSTEM,
        organisation[Role.LEAD].account.id,
        enabled=True,
        mode=DeliveryMode.IMMEDIATE,
        address="lead@staff.example",
        openpgp_key=openpgp_member_key.public_armored,
        integrity_key=server_secrets.key_integrity_key,
    )
    db_session.commit()
    receipts = [submit(intake_client, urgent=True)]
    mail_sender.run_once()
    clock.advance(seconds=60)
    assert mail_sender.run_once().sent == 1
    (mail,) = smtp_server.messages
    assert mail.message["Subject"] == "Daylight notice"
    assert b"urgent" not in mail.raw.lower()
    assert b"report" not in mail.raw.lower()
    armored = next(
        part.get_content()
        for part in mail.message.walk()
        if part.get_content_type() == "application/octet-stream"
    )
    inner = openpgp_member_key.decrypt(armored)
    assert URGENT_BODY.replace("\n", "\r\n").encode() in inner or URGENT_BODY.encode() in inner
    assert_content_free(inner, receipts)
