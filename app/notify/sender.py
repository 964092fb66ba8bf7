"""The sender: outbox events become deliveries, and due deliveries are sent, retried and audited.

One run (`daylight notify`, or every `notify_interval_seconds` in `daylight serve`):

1. **Fan-out**, short transactions: the response clocks queue their reminders once per UTC day
   (app.notify.reminders); every outbox event is resolved to its members now (app.notify.recipients)
   and counted into one delivery per recipient, channel and batch (an idempotency key): immediate
   notices batch for `notify_batch_seconds`, digests for the organisation's digest period; a
   non-urgent new report always waits for the digest, an urgent one never does. The events are
   deleted in the same transaction. On PostgreSQL a try-advisory-lock lets one node fan out while
   the others skip; on SQLite the write lock orders them. The batch is chosen by the clock read
   once the lock is held, and counts are merged only into a delivery no sender holds: a batch
   being sent gets a sibling (the same batch, the next generation), so nothing added is lost.
   Recipients do not depend on this node's mail settings: a node without a mail server leaves
   e-mail deliveries for one that has it.
2. **Claim**: each due delivery is taken with one conditional UPDATE setting a lease, committed
   before anything is sent, and the lease is renewed (conditionally again) right before each send:
   a lease that ran out while earlier sends were slow is not used. Two senders (two nodes, or
   `serve` beside a cron `notify`) never hold the same delivery; a sender that dies mid-send
   leaves a lease that expires, and the delivery is sent again then (at least once: the
   Message-ID and the webhook's Idempotency-Key are the delivery's own, so the receiving side can
   drop that duplicate).
3. **Send**, outside any transaction (a slow mail server holds no database lock), then delete
   the delivery, or record the failure: attempts, the next try (back-off doubling from a minute
   to an hour, retried for as long as it takes: nothing is dropped while the server is down), the
   failure's content-free reason, and a `notify.failed` audit event. A failure the server calls
   permanent (an address refused) parks the delivery after PERMANENT_ATTEMPTS tries: kept, listed
   on the admin's page as needing action, tried again when the member changes their settings. An
   unexpected error in one delivery is recorded like a failure and never stops the others.

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

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import StaffAccount
from app.kit.clock import as_utc, utc_now
from app.kit.config import Settings
from app.kit.db import Database
from app.notify import channels, preferences, reminders
from app.notify.models import Channel, DeliveryMode, NotificationDelivery
from app.notify.notices import Notice, render_notice
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
PERMANENT_ATTEMPTS = 3
# A batch whose delivery is being sent takes new counts in its next generation (another row).
MAX_GENERATIONS = 20
UNEXPECTED_FAILURE = "unexpected error in the sender (see the server log)"

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
    channel: Channel, recipient: uuid.UUID | None, mode: DeliveryMode, batch_start: int, generation: int = 0
) -> str:
    who = str(recipient) if recipient is not None else "organisation"
    batch = f"daylight-notice/v1|{channel.value}|{who}|{mode.value}|{batch_start}|{generation}"
    return hashlib.sha256(batch.encode()).hexdigest()


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


@dataclass(frozen=True)
class Prepared:
    """A claimed delivery, read and rendered, ready to send outside any transaction."""

    idempotency_key: str
    channel: Channel
    attempts: int
    target: MailTarget | WebhookTarget
    notice: Notice


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
        # The day this sender last swept every report's clocks: they count whole days, so once a
        # day is enough (and a sweep that stopped at its limit goes on at the next run).
        self._swept_on: dt.date | None = None

    # -- fan-out -----------------------------------------------------------------------------

    def _hold_fan_out_lock(self, session: Session) -> bool:
        """Whether this transaction may fan out: PostgreSQL, the try-advisory-lock; SQLite, the
        write lock its transactions take with their first statement."""
        if session.get_bind().dialect.name == "postgresql":
            return bool(
                session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FAN_OUT_LOCK_KEY})
            )
        session.execute(text("SELECT 1"))
        return True

    def sweep_clocks(self, report: NotifyReport) -> None:
        today = self.now().date()
        if self._swept_on == today:
            return
        with self.database.transaction() as session:
            if not self._hold_fan_out_lock(session):
                return
            sweep = reminders.queue_reminders(session, self.settings, today)
        report.reminders = sweep.reminded
        if not sweep.more:
            self._swept_on = today

    def fan_out(self, session: Session, report: NotifyReport) -> None:
        if not self._hold_fan_out_lock(session):
            report.fan_out_skipped = True
            return
        # Read with the lock held: no sender can be holding the batch this moment falls in.
        moment = self.now()
        events = list(
            session.scalars(select(NotificationEvent).order_by(NotificationEvent.id).limit(EVENTS_PER_RUN))
        )
        if not events:
            return
        organisation = preferences.organisation_channels(session, self.integrity_key)
        resolver = AudienceResolver(session)
        members_by_event = {event.id: resolver.members_of(event) for event in events}
        everyone = set().union(*members_by_event.values())
        mailable = preferences.enabled_members(session, everyone) if organisation.email_enabled else {}
        counts: dict[tuple[Channel, uuid.UUID | None, DeliveryMode], Counter[str]] = defaultdict(Counter)
        for event in events:
            kind = NoticeKind(event.kind)
            for member in members_by_event[event.id]:
                member_preferences = mailable.get(member)
                if member_preferences is not None:
                    mode = mode_for(kind, DeliveryMode(member_preferences.mode))
                    counts[(Channel.EMAIL, member, mode)][kind.value] += event.count
            if (
                organisation.webhook_url is not None
                and kind in WEBHOOK_KINDS
                and not resolver.concerns_restricted_case(event)
            ):
                webhook_mode = mode_for(kind, DeliveryMode.IMMEDIATE)
                counts[(Channel.WEBHOOK, None, webhook_mode)][kind.value] += event.count
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
        for generation in range(MAX_GENERATIONS):
            key = idempotency_key(channel, recipient, mode, start, generation)
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
                        parked=False,
                    )
                )
                session.flush()
                return
            merged = Counter(json.loads(delivery.counts))
            merged.update(kinds)
            # Only into a delivery no sender holds: what a sender already read and is sending
            # would otherwise be deleted with counts it never sent.
            changed = session.execute(
                update(NotificationDelivery)
                .where(NotificationDelivery.id == delivery.id, NotificationDelivery.lease_owner.is_(None))
                .values(counts=json.dumps(dict(sorted(merged.items()))))
                .execution_options(synchronize_session=False)
            )
            if getattr(changed, "rowcount", 0) == 1:
                return
        raise RuntimeError("every generation of this batch is being sent")  # pragma: no cover - 20 senders

    # -- claim and send ----------------------------------------------------------------------

    def claim_due(self) -> list[uuid.UUID]:
        moment = self.now()
        lease_until = moment + dt.timedelta(seconds=LEASE_SECONDS)
        free = or_(NotificationDelivery.lease_until.is_(None), NotificationDelivery.lease_until < moment)
        sendable: ColumnElement[bool] = NotificationDelivery.parked.is_(False)
        if self.mail_server is None:
            # E-mail waits for a node that has a mail server; this one sends webhooks only.
            sendable = and_(sendable, NotificationDelivery.channel != Channel.EMAIL.value)
        claimed = []
        with self.database.transaction() as session:
            candidates = list(
                session.scalars(
                    select(NotificationDelivery.id)
                    .where(NotificationDelivery.next_attempt_at <= moment, free, sendable)
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

    def _prepare(self, delivery_id: uuid.UUID, report: NotifyReport) -> Prepared | None:
        """Renew the lease (still ours and unexpired, or nothing is sent), then read and render."""
        moment = self.now()
        with self.database.transaction() as session:
            renewed = session.execute(
                update(NotificationDelivery)
                .where(
                    NotificationDelivery.id == delivery_id,
                    NotificationDelivery.lease_owner == self.owner,
                    NotificationDelivery.lease_until > moment,
                )
                .values(lease_until=moment + dt.timedelta(seconds=LEASE_SECONDS))
                .execution_options(synchronize_session=False)
            )
            if getattr(renewed, "rowcount", 0) != 1:
                return None
            delivery = session.get_one(NotificationDelivery, delivery_id)
            target = self._target(session, delivery)
            if target is None:
                session.delete(delivery)
                report.dropped += 1
                return None
            notice = render_notice(
                json.loads(delivery.counts), delivery.mode, staff_origin=self.settings.staff_origin
            )
            return Prepared(
                delivery.idempotency_key, Channel(delivery.channel), delivery.attempts, target, notice
            )

    def deliver(self, delivery_id: uuid.UUID, report: NotifyReport) -> None:
        channel, attempts = Channel.EMAIL, 0
        try:
            prepared = self._prepare(delivery_id, report)
            if prepared is None:
                return
            channel, attempts = prepared.channel, prepared.attempts
            self._send(prepared)
        except channels.DeliveryFailed as failure:
            self._record_failure(
                delivery_id, channel, attempts + 1, failure.reason, permanent=failure.permanent
            )
            report.failed += 1
            return
        except Exception:
            # One bad delivery (a stored key or address that no longer reads) must not stop the rest.
            logger.exception("a notice could not be sent")
            self._record_failure(delivery_id, channel, attempts + 1, UNEXPECTED_FAILURE, permanent=True)
            report.failed += 1
            return
        with self.database.transaction() as session:
            session.execute(
                delete(NotificationDelivery).where(
                    NotificationDelivery.id == delivery_id, NotificationDelivery.lease_owner == self.owner
                )
            )
        report.sent += 1

    def _send(self, prepared: Prepared) -> None:
        target, notice, key = prepared.target, prepared.notice, prepared.idempotency_key
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

    def _target(self, session: Session, delivery: NotificationDelivery) -> MailTarget | WebhookTarget | None:
        """Where the delivery goes now; None when it can no longer go anywhere (the member left,
        turned notices off or removed their address; the organisation turned the channel off)."""
        organisation = preferences.organisation_channels(session, self.integrity_key)
        if delivery.channel == Channel.WEBHOOK.value:
            if organisation.webhook_url is None or organisation.webhook_signing_key is None:
                return None
            return WebhookTarget(organisation.webhook_url, organisation.webhook_signing_key)
        if self.mail_server is None or delivery.recipient_id is None or not organisation.email_enabled:
            return None
        account = session.get(StaffAccount, delivery.recipient_id)
        if account is None or not account.is_active:
            return None
        row = preferences.enabled_members(session, {delivery.recipient_id}).get(delivery.recipient_id)
        address = preferences.preference_address(row, self.integrity_key) if row is not None else None
        if row is None or address is None:
            return None
        return MailTarget(self.mail_server, address, row.openpgp_key)

    def _record_failure(
        self, delivery_id: uuid.UUID, channel: Channel, attempts: int, reason: str, *, permanent: bool
    ) -> None:
        moment = self.now()
        # Parked: not tried again until the member changes their settings (app.notify.preferences).
        parked = permanent and attempts >= PERMANENT_ATTEMPTS
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
                    parked=parked,
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
                details={
                    "channel": channel.value,
                    "attempts": attempts,
                    "reason": reason[:120],
                    "permanent": permanent,
                    "parked": parked,
                },
            )

    # -- one run -----------------------------------------------------------------------------

    def run_once(self) -> NotifyReport:
        report = NotifyReport()
        self.sweep_clocks(report)
        with self.database.transaction() as session:
            self.fan_out(session, report)
        for delivery_id in self.claim_due():
            self.deliver(delivery_id, report)
        return report


@dataclass(frozen=True)
class DeliveryBacklog:
    pending: int
    failing: int
    parked: int
    email_due: int  # e-mail deliveries due now: waiting for a mail server, when none is set
    # channel, reason, attempts, next try, parked: the latest failures, worst first.
    last_errors: list[tuple[str, str, int, dt.datetime, bool]]


def backlog(session: Session, *, now: dt.datetime | None = None) -> DeliveryBacklog:
    """What the admin's page and `daylight doctor` show: deliveries waiting, and those that
    failed, without content."""
    moment = now or utc_now()

    def count(*conditions: ColumnElement[bool]) -> int:
        return session.scalar(select(func.count()).select_from(NotificationDelivery).where(*conditions)) or 0

    failing_rows = session.execute(
        select(
            NotificationDelivery.channel,
            NotificationDelivery.last_error,
            NotificationDelivery.attempts,
            NotificationDelivery.next_attempt_at,
            NotificationDelivery.parked,
        )
        .where(NotificationDelivery.attempts > 0)
        .order_by(NotificationDelivery.parked.desc(), NotificationDelivery.attempts.desc())
        .limit(20)
    )
    return DeliveryBacklog(
        pending=count(),
        failing=count(NotificationDelivery.attempts > 0),
        parked=count(NotificationDelivery.parked.is_(True)),
        email_due=count(
            NotificationDelivery.channel == Channel.EMAIL.value,
            NotificationDelivery.next_attempt_at <= moment,
        ),
        last_errors=[
            (channel, reason or "", attempts, as_utc(at), bool(parked))
            for channel, reason, attempts, at, parked in failing_rows
        ],
    )
