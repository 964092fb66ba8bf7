"""The sender: outbox events become deliveries, and due deliveries are sent, retried and audited.

One run (`daylight notify`, or every `notify_interval_seconds` in `daylight serve`):

1. **Fan-out**, one short transaction: the response clocks queue their reminders
   (app.notify.reminders); every outbox event is resolved to its members now (app.notify.recipients)
   and counted into one delivery per recipient, channel and batch (an idempotency key): immediate
   notices batch for `notify_batch_seconds`, digests for the organisation's digest period; a
   non-urgent new report always waits for the digest, an urgent one never does. The events are
   deleted in the same transaction. On PostgreSQL a try-advisory-lock lets one node fan out while
   the others skip; on SQLite the write lock orders them.
2. **Claim**: each due delivery is taken with one conditional UPDATE setting a lease, committed
   before anything is sent. Two senders (two nodes, or `serve` beside a cron `notify`) never hold
   the same delivery; a sender that dies mid-send leaves a lease that expires, and the delivery is
   sent again then (at least once: the Message-ID and the webhook's Idempotency-Key are the
   delivery's own, so the receiving side can drop that duplicate).
3. **Send**, outside any transaction (a slow mail server holds no database lock), then delete
   the delivery, or record the failure: attempts, the next try (back-off doubling from a minute
   to an hour, retried for as long as it takes: nothing is dropped while the server is down), the
   failure's content-free reason, and a `notify.failed` audit event. The admin's page lists them.

A delivery whose member has since turned notices off, removed their address or left is dropped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.kit.clock import as_utc, utc_now
from app.kit.config import Settings
from app.kit.db import Database
from app.notify import channels, preferences, reminders
from app.notify.models import Channel, DeliveryMode, NotificationDelivery
from app.notify.notices import render_notice
from app.notify.recipients import AudienceResolver
from app.outbox.models import NoticeKind, NotificationEvent

logger = logging.getLogger(__name__)

# Any constant distinct from the other advisory locks (audit checkpoint, purge, queue counts).
FAN_OUT_LOCK_KEY = 0x6E6F7469667921
EVENTS_PER_RUN = 5000
DELIVERIES_PER_RUN = 200
LEASE_SECONDS = 300
FIRST_RETRY_SECONDS = 60
LAST_RETRY_SECONDS = 3600

# The webhook is the organisation's own room (a Signal or Matrix bridge): it hears what concerns
# everyone there, not what is addressed to one member.
WEBHOOK_KINDS = frozenset(
    {
        NoticeKind.URGENT_REPORT,
        NoticeKind.NEW_REPORT,
        NoticeKind.SUBMITTER_ANSWERED,
        NoticeKind.VERIFICATION_WAITING,
        NoticeKind.OVERDUE,
        NoticeKind.RETENTION,
    }
)


@dataclass
class NotifyReport:
    reminders: int = 0
    events: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    fan_out_skipped: bool = False


def mode_for(kind: NoticeKind, member_mode: DeliveryMode) -> DeliveryMode:
    if kind is NoticeKind.URGENT_REPORT:
        return DeliveryMode.IMMEDIATE
    if kind is NoticeKind.NEW_REPORT:
        return DeliveryMode.DIGEST
    return member_mode


def batch_of(
    moment: dt.datetime, mode: DeliveryMode, *, batch_seconds: int, digest_hours: int
) -> tuple[int, dt.datetime]:
    """The batch ``moment`` falls in (its start, as a Unix time) and when it is due (its end)."""
    period = batch_seconds if mode is DeliveryMode.IMMEDIATE else digest_hours * 3600
    start = int(moment.timestamp()) // period * period
    return start, dt.datetime.fromtimestamp(start + period, dt.UTC)


def idempotency_key(
    channel: Channel, recipient: uuid.UUID | None, mode: DeliveryMode, batch_start: int
) -> str:
    who = str(recipient) if recipient is not None else "organisation"
    return hashlib.sha256(
        f"daylight-notice/v1|{channel.value}|{who}|{mode.value}|{batch_start}".encode()
    ).hexdigest()


def retry_delay(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), LAST_RETRY_SECONDS))


@dataclass(frozen=True)
class MailTarget:
    server: channels.MailServer
    address: str
    openpgp_key: str | None


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    signing_key: bytes = field(repr=False)


class NotificationSender:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        integrity_key: bytes,
        *,
        now: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.database = database
        self.settings = settings
        self.integrity_key = integrity_key
        self.now = now
        self.owner = uuid.uuid4().hex
        self.mail_server = (
            channels.parse_smtp_url(
                settings.smtp_url.get_secret_value(),
                sender=settings.mail_from or "daylight@localhost",
                ca_file=settings.notify_ca_file,
            )
            if settings.smtp_url is not None
            else None
        )

    # -- fan-out -----------------------------------------------------------------------------

    def fan_out(self, session: Session, report: NotifyReport) -> None:
        if session.get_bind().dialect.name == "postgresql" and not session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FAN_OUT_LOCK_KEY}
        ):
            report.fan_out_skipped = True
            return
        moment = self.now()
        report.reminders = reminders.queue_reminders(session, self.settings, moment.date())
        events = list(
            session.scalars(select(NotificationEvent).order_by(NotificationEvent.id).limit(EVENTS_PER_RUN))
        )
        if not events:
            return
        organisation = preferences.organisation_channels(session, self.integrity_key)
        resolver = AudienceResolver(session)
        members_by_event = {event.id: resolver.members_of(event) for event in events}
        everyone = set().union(*members_by_event.values())
        mailable = (
            preferences.enabled_members(session, everyone)
            if organisation.email_enabled and self.mail_server is not None
            else {}
        )
        counts: dict[tuple[Channel, uuid.UUID | None, DeliveryMode], Counter[str]] = defaultdict(Counter)
        for event in events:
            kind = NoticeKind(event.kind)
            for member in members_by_event[event.id]:
                member_preferences = mailable.get(member)
                if member_preferences is not None:
                    mode = mode_for(kind, DeliveryMode(member_preferences.mode))
                    counts[(Channel.EMAIL, member, mode)][kind.value] += event.count
            if organisation.webhook_url is not None and kind in WEBHOOK_KINDS:
                counts[(Channel.WEBHOOK, None, mode_for(kind, DeliveryMode.IMMEDIATE))][kind.value] += (
                    event.count
                )
        for (channel, recipient, mode), kinds in counts.items():
            self._add_to_batch(session, channel, recipient, mode, kinds, moment, organisation.digest_hours)
        session.execute(
            delete(NotificationEvent).where(NotificationEvent.id.in_([event.id for event in events]))
        )
        report.events = len(events)

    def _add_to_batch(
        self,
        session: Session,
        channel: Channel,
        recipient: uuid.UUID | None,
        mode: DeliveryMode,
        kinds: Counter[str],
        moment: dt.datetime,
        digest_hours: int,
    ) -> None:
        start, due = batch_of(
            moment, mode, batch_seconds=self.settings.notify_batch_seconds, digest_hours=digest_hours
        )
        key = idempotency_key(channel, recipient, mode, start)
        delivery = session.scalar(
            select(NotificationDelivery).where(NotificationDelivery.idempotency_key == key)
        )
        if delivery is None:
            session.add(
                NotificationDelivery(
                    idempotency_key=key,
                    channel=channel.value,
                    recipient_id=recipient,
                    mode=mode.value,
                    counts=json.dumps(dict(sorted(kinds.items()))),
                    due_at=due,
                    attempts=0,
                    next_attempt_at=due,
                )
            )
        else:
            merged = Counter(json.loads(delivery.counts))
            merged.update(kinds)
            delivery.counts = json.dumps(dict(sorted(merged.items())))
        session.flush()

    # -- claim and send ----------------------------------------------------------------------

    def claim_due(self) -> list[uuid.UUID]:
        moment = self.now()
        lease_until = moment + dt.timedelta(seconds=LEASE_SECONDS)
        free = or_(NotificationDelivery.lease_until.is_(None), NotificationDelivery.lease_until < moment)
        claimed = []
        with self.database.transaction() as session:
            candidates = list(
                session.scalars(
                    select(NotificationDelivery.id)
                    .where(NotificationDelivery.next_attempt_at <= moment, free)
                    .order_by(NotificationDelivery.next_attempt_at, NotificationDelivery.id)
                    .limit(DELIVERIES_PER_RUN)
                )
            )
            for delivery_id in candidates:
                # The condition is checked again on the row itself: on PostgreSQL a second sender's
                # UPDATE waits for the first to commit, then finds the lease taken and changes nothing.
                taken = session.execute(
                    update(NotificationDelivery)
                    .where(NotificationDelivery.id == delivery_id, free)
                    .values(lease_owner=self.owner, lease_until=lease_until)
                    .execution_options(synchronize_session=False)
                )
                if getattr(taken, "rowcount", 0) == 1:
                    claimed.append(delivery_id)
        return claimed

    def deliver(self, delivery_id: uuid.UUID, report: NotifyReport) -> None:
        with self.database.transaction() as session:
            delivery = session.get(NotificationDelivery, delivery_id)
            if delivery is None or delivery.lease_owner != self.owner:
                return
            target = self._target(session, delivery)
            if target is None:
                session.delete(delivery)
                report.dropped += 1
                return
            notice = render_notice(
                json.loads(delivery.counts), delivery.mode, staff_origin=self.settings.staff_origin
            )
            key, channel, attempts = delivery.idempotency_key, Channel(delivery.channel), delivery.attempts
        try:
            if isinstance(target, MailTarget):
                channels.send_mail(
                    target.server,
                    recipient=target.address,
                    subject=notice.subject,
                    body=notice.body,
                    message_id=key,
                    openpgp_key=target.openpgp_key,
                )
            else:
                channels.send_webhook(
                    target.url,
                    signing_key=target.signing_key,
                    payload={"id": key, "mode": notice.mode, "counts": notice.counts, "text": notice.body},
                    idempotency_key=key,
                    ca_file=self.settings.notify_ca_file,
                )
        except channels.DeliveryFailed as failure:
            self._record_failure(delivery_id, channel, attempts + 1, failure.reason)
            report.failed += 1
            return
        with self.database.transaction() as session:
            session.execute(
                delete(NotificationDelivery).where(
                    NotificationDelivery.id == delivery_id, NotificationDelivery.lease_owner == self.owner
                )
            )
        report.sent += 1

    def _target(self, session: Session, delivery: NotificationDelivery) -> MailTarget | WebhookTarget | None:
        """Where the delivery goes now; None when it can no longer go anywhere."""
        if delivery.channel == Channel.WEBHOOK.value:
            organisation = preferences.organisation_channels(session, self.integrity_key)
            if organisation.webhook_url is None or organisation.webhook_signing_key is None:
                return None
            return WebhookTarget(organisation.webhook_url, organisation.webhook_signing_key)
        if self.mail_server is None or delivery.recipient_id is None:
            return None
        account = session.get(StaffAccount, delivery.recipient_id)
        if account is None or not account.is_active:
            return None
        if not preferences.organisation_channels(session, self.integrity_key).email_enabled:
            return None
        row = preferences.enabled_members(session, {delivery.recipient_id}).get(delivery.recipient_id)
        address = preferences.preference_address(row, self.integrity_key) if row is not None else None
        if row is None or address is None:
            return None
        return MailTarget(self.mail_server, address, row.openpgp_key)

    def _record_failure(self, delivery_id: uuid.UUID, channel: Channel, attempts: int, reason: str) -> None:
        moment = self.now()
        with self.database.transaction() as session:
            changed = session.execute(
                update(NotificationDelivery)
                .where(NotificationDelivery.id == delivery_id, NotificationDelivery.lease_owner == self.owner)
                .values(
                    attempts=attempts,
                    next_attempt_at=moment + retry_delay(attempts),
                    lease_owner=None,
                    lease_until=None,
                    last_error=reason[:120],
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(changed, "rowcount", 0) != 1:
                return
            audit.record(
                session,
                audit.SYSTEM,
                "notify.failed",
                object_type="notification",
                object_id=delivery_id,
                outcome=audit.Outcome.FAILURE,
                details={"channel": channel.value, "attempts": attempts, "reason": reason[:120]},
            )

    # -- one run -----------------------------------------------------------------------------

    def run_once(self) -> NotifyReport:
        report = NotifyReport()
        with self.database.transaction() as session:
            self.fan_out(session, report)
        for delivery_id in self.claim_due():
            self.deliver(delivery_id, report)
        return report


@dataclass(frozen=True)
class DeliveryBacklog:
    pending: int
    failing: int
    oldest_failure_attempts: int
    last_errors: list[tuple[str, str, int, dt.datetime]]  # channel, reason, attempts, next try


def backlog(session: Session) -> DeliveryBacklog:
    """What the admin's page shows: deliveries waiting, and those that failed, without content."""
    pending = session.scalar(select(func.count()).select_from(NotificationDelivery)) or 0
    failing_rows = list(
        session.execute(
            select(
                NotificationDelivery.channel,
                NotificationDelivery.last_error,
                NotificationDelivery.attempts,
                NotificationDelivery.next_attempt_at,
            )
            .where(NotificationDelivery.attempts > 0)
            .order_by(NotificationDelivery.attempts.desc(), NotificationDelivery.next_attempt_at)
            .limit(20)
        )
    )
    failing = (
        session.scalar(
            select(func.count()).select_from(NotificationDelivery).where(NotificationDelivery.attempts > 0)
        )
        or 0
    )
    return DeliveryBacklog(
        pending=pending,
        failing=failing,
        oldest_failure_attempts=max((row[2] for row in failing_rows), default=0),
        last_errors=[
            (channel, reason or "", attempts, as_utc(at)) for channel, reason, attempts, at in failing_rows
        ],
    )
