"""The queue's per-status counts come from counters that database triggers keep; on both databases
they must equal a count of every visible tip, one by one, after every kind of write, under every
filter, for members and non-members of restricted cases, and in the migration that creates them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Connection, delete, func, inspect, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role, StaffAccount
from app.auth.principal import Principal, UnlockedKeys
from app.cases import service as cases_service
from app.cases.repository import tips_visible_to
from app.cases.schemas import CaseCreate
from app.crypto import sealing
from app.entrypoints.organisation import init_organisation
from app.intake import service as intake_service
from app.intake.models import TIP_ANSWERS, MessageAuthor, RejectionReason, Tip, TipStatus
from app.keys import rotation
from app.kit.blobs import BlobStore
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from app.outbox.models import NotificationEvent
from app.schema import migrate, upgrade_to_head
from app.triage import reading, retention, service, tags, workflow
from app.triage.models import TipQueueCount, TipQueueCountChange, TipTag
from app.triage.repository import QUEUE_COUNTS_FOLD_LOCK_KEY
from app.triage.schemas import QueueFilters
from tests.auth.factories import StaffMember, make_member
from tests.conftest import CHEAP_ARGON2, Backend, Organisation
from tests.intake.factories import make_tip

QUEUE_COUNT_TRIGGERS = frozenset(
    {
        ("tips", "tip_queue_counts_tips_inserted"),
        ("tips", "tip_queue_counts_tip_rekeyed"),
        ("tips", "tip_queue_counts_tip_deleting"),
        ("tip_tags", "tip_queue_counts_tags_inserted"),
        ("tip_tags", "tip_queue_counts_tags_deleted"),
        ("tip_tags", "tip_queue_counts_tag_updated"),
    }
)

# Every filter alone, and combinations that cross the counters' facets with their key.
FILTER_CASES = (
    QueueFilters(),
    QueueFilters(status=TipStatus.NEW),  # narrows the page, never the counts
    QueueFilters(mine=True),
    QueueFilters(unassigned=True),
    QueueFilters(urgent=True),
    QueueFilters(urgent=False),
    QueueFilters(tactic="surveillance"),
    QueueFilters(tactic="digital_threats"),
    QueueFilters(country="IE"),
    QueueFilters(tactic="surveillance", country="IE"),
    QueueFilters(tactic="family_pressure", country="NL", urgent=True),
    QueueFilters(country="IE", mine=True),
    QueueFilters(tactic="surveillance", unassigned=True, urgent=False),
    QueueFilters(mine=True, unassigned=True),
)

# (tactics, country, urgent) of the tips every test starts from.
ANSWERS = (
    (["surveillance", "station_contact"], "IE", False),
    (["surveillance"], "IE", True),
    (["family_pressure", "surveillance", "digital_threats"], "NL", True),
    (["family_pressure"], "NL", False),
    (["digital_threats", "station_contact"], "IE", False),
    (["persuade_to_return"], "DE", True),
    (["surveillance", "family_pressure"], "NL", True),
    (["station_contact"], "IE", False),
)


def principal_of(member: StaffMember, intake: dict[int, sealing.PrivateKey]) -> Principal:
    return Principal(
        account_id=member.account.id,
        username=member.username,
        role=Role(member.account.role),
        session_id=uuid.uuid4(),
        keys=UnlockedKeys(personal=sealing.generate_private_key(), intake=intake),
        reauthenticated_at=dt.datetime.now(dt.UTC),
        csrf_token="",
    )


def with_keys(principal: Principal, intake: dict[int, sealing.PrivateKey]) -> Principal:
    return dataclasses.replace(
        principal, keys=UnlockedKeys(personal=sealing.generate_private_key(), intake=intake)
    )


def counted_one_by_one(session: Session, principal: Principal, filters: QueueFilters) -> dict[str, int]:
    """The definition the counters must meet: every tip the caller may see, filtered here."""
    session.flush()
    tags_of: dict[uuid.UUID, set[bytes]] = defaultdict(set)
    for tip_id, tag in session.execute(select(TipTag.tip_id, TipTag.tag)):
        tags_of[tip_id].add(tag)
    asked = (("tactic", filters.tactic), ("country", filters.country))
    wanted = [set(tags.tags_for(principal, kind, [value])) for kind, value in asked if value is not None]
    counts = {status.value: 0 for status in TipStatus}
    visible = tips_visible_to(principal).with_only_columns(Tip.id, Tip.status, Tip.urgent, Tip.assignee_id)
    for tip_id, status, urgent, assignee_id in session.execute(visible):
        if (
            (filters.assignee is not None and assignee_id != filters.assignee)
            or (filters.mine and assignee_id != principal.account_id)
            or (filters.unassigned and assignee_id is not None)
            or (filters.urgent is not None and urgent != filters.urgent)
            or any(not tags_of[tip_id] & tags_wanted for tags_wanted in wanted)
        ):
            continue
        counts[TipStatus(status).value] += 1
    return counts


def every_filter(principal: Principal, others: list[uuid.UUID]) -> list[QueueFilters]:
    return [
        *FILTER_CASES,
        *(QueueFilters(assignee=account_id) for account_id in others),
        QueueFilters(assignee=others[0], tactic="surveillance", country="IE"),
    ]


def mismatches(
    session: Session, principals: list[Principal]
) -> list[tuple[str, QueueFilters, dict[str, int], dict[str, int]]]:
    """(who, filters, counted by the queue, counted one by one) wherever the two differ."""
    found = []
    accounts = [principal.account_id for principal in principals]
    for principal in principals:
        for filters in every_filter(principal, accounts):
            queue = service.list_queue(session, principal, filters).counts
            expected = counted_one_by_one(session, principal, filters)
            if queue != expected:
                found.append((principal.username, filters, queue, expected))
    return found


@dataclasses.dataclass
class Queue:
    session: Session
    server_secrets: ServerSecrets
    caseworker: Principal
    lead: Principal
    second_lead: Principal
    tips: list[uuid.UUID]
    receipts: list[str]

    @property
    def principals(self) -> list[Principal]:
        return [self.caseworker, self.lead, self.second_lead]

    def assert_exact(self) -> None:
        assert mismatches(self.session, self.principals) == []


@pytest.fixture
def queue(
    db_session: Session, server_secrets: ServerSecrets, settings: Settings, organisation: Organisation
) -> Queue:
    """Eight tips with varied answers, six of them opened (so indexed), three claimed."""
    second_lead = make_member(db_session, settings, server_secrets, Role.LEAD, grant=organisation.intake)
    keys = {1: organisation.intake.private}
    state = Queue(
        session=db_session,
        server_secrets=server_secrets,
        caseworker=principal_of(organisation[Role.CASEWORKER], keys),
        lead=principal_of(organisation[Role.LEAD], keys),
        second_lead=principal_of(second_lead, keys),
        tips=[],
        receipts=[],
    )
    for tactics, country, urgent in ANSWERS:
        tip_id, receipt = make_tip(
            db_session,
            server_secrets,
            tactics=tactics,
            host_country=country,
            host_city="Dublin" if country == "IE" else "Amsterdam",
            urgent=urgent,
        )
        state.tips.append(tip_id)
        state.receipts.append(receipt)
    for tip_id in state.tips[:6]:
        reading.read_tip(db_session, state.lead, tip_id, integrity_key=server_secrets.key_integrity_key)
    workflow.claim(db_session, state.caseworker, state.tips[0])
    workflow.claim(db_session, state.caseworker, state.tips[2])
    workflow.claim(db_session, state.lead, state.tips[4])
    db_session.flush()
    return state


def test_counts_are_exact_after_submissions_and_indexing(queue: Queue) -> None:
    queue.assert_exact()
    pairs = QueueFilters(tactic="surveillance", country="IE")
    # The scenario exercises pairs, not only empty counts.
    assert sum(counted_one_by_one(queue.session, queue.caseworker, pairs).values()) == 2


def test_counts_are_exact_for_tips_not_opened_yet(queue: Queue) -> None:
    make_tip(queue.session, queue.server_secrets, tactics=["surveillance"], host_country="IE", urgent=True)
    queue.assert_exact()


def test_counts_are_exact_after_each_workflow_step(queue: Queue) -> None:
    session, caseworker, lead = queue.session, queue.caseworker, queue.lead
    steps: list[Callable[[], object]] = [
        lambda: workflow.send_message(
            session,
            caseworker,
            queue.tips[0],
            "Which city?",
            question=True,
            server_secrets=queue.server_secrets,
        ),
        # The submitter's answer, through intake: back to in_review.
        lambda: intake_service.add_message(
            session,
            session.get_one(Tip, queue.tips[0]),
            "Rotterdam",
            author=MessageAuthor.SUBMITTER,
            server_secrets=queue.server_secrets,
        ),
        lambda: workflow.release(session, caseworker, queue.tips[2]),
        lambda: workflow.assign(session, lead, queue.tips[2], queue.second_lead.account_id),
        lambda: workflow.assign(session, lead, queue.tips[1], caseworker.account_id),
        lambda: workflow.propose_verification(session, lead, queue.tips[4]),
        lambda: workflow.confirm_verification(session, queue.second_lead, queue.tips[4]),
        lambda: workflow.reject(session, caseworker, queue.tips[1], RejectionReason.SPAM),
        lambda: workflow.claim(session, lead, queue.tips[6]),
    ]
    for step in steps:
        step()
        queue.assert_exact()
    assert queue.session.get_one(Tip, queue.tips[0]).status is TipStatus.IN_REVIEW


def test_counts_are_exact_after_the_urgency_flag_changes(queue: Queue) -> None:
    queue.session.execute(update(Tip).where(Tip.id.in_(queue.tips[:3])).values(urgent=~Tip.urgent))
    queue.assert_exact()


def test_counts_are_exact_after_the_submitter_deletes_a_tip(queue: Queue, settings: Settings) -> None:
    for index in (0, 3, 7):  # claimed and indexed; indexed; neither
        holder = intake_service.tip_for_receipt(
            queue.session,
            queue.receipts[index],
            receipt_pepper=queue.server_secrets.receipt_pepper,
            key_integrity_key=queue.server_secrets.key_integrity_key,
        )
        assert holder is not None
        intake_service.delete_tip(queue.session, holder, BlobStore(settings.blobs_dir))
        queue.assert_exact()


def test_counts_are_exact_after_the_retention_purge(queue: Queue, settings: Settings) -> None:
    workflow.reject(queue.session, queue.caseworker, queue.tips[0], RejectionReason.INSUFFICIENT)
    report = retention.purge_expired(
        queue.session,
        settings,
        BlobStore(settings.blobs_dir),
        today=dt.date.today() + dt.timedelta(days=3650),
    )
    assert (report.rejected, report.stale_new) == (1, 5)
    queue.assert_exact()


def test_a_purge_of_every_tip_leaves_no_counter_behind(queue: Queue, settings: Settings) -> None:
    """A crypto-shredded tip's tags and state must not outlive it as a counter of zero tips."""
    queue.session.execute(update(Tip).values(status=TipStatus.REJECTED))
    retention.purge_expired(
        queue.session,
        settings,
        BlobStore(settings.blobs_dir),
        today=dt.date.today() + dt.timedelta(days=3650),
    )
    service.list_queue(queue.session, queue.lead)
    assert queue.session.scalar(select(func.count()).select_from(TipQueueCount)) == 0
    assert queue.session.scalar(select(func.count()).select_from(TipQueueCountChange)) == 0


def test_counts_are_exact_after_a_key_rotation_replaces_the_tags(queue: Queue) -> None:
    session = queue.session
    under_way = rotation.start(
        session,
        {1: queue.lead.keys.intake[1]},
        audit.SYSTEM,
        key_integrity_key=queue.server_secrets.key_integrity_key,
    )
    while any(rotation.reseal_batch(session, under_way, batch_size=3).values()):
        # Half-way, the tips hold tags under either version: a holder of both counts each once.
        queue.lead = with_keys(queue.lead, {1: under_way.old_private, 2: under_way.new_private})
        queue.assert_exact()
    rotation.finish(
        session, under_way, audit.SYSTEM, {}, key_integrity_key=queue.server_secrets.key_integrity_key
    )
    queue.caseworker, queue.lead, queue.second_lead = (
        with_keys(principal, {2: under_way.new_private}) for principal in queue.principals
    )
    queue.assert_exact()
    # The three opened tips that name the tactic, found by their new tags.
    moved = counted_one_by_one(session, queue.lead, QueueFilters(tactic="surveillance"))
    assert sum(moved.values()) == 3


def test_counts_are_exact_after_an_assignee_account_is_deleted(queue: Queue) -> None:
    """The foreign key unassigns the tips (ON DELETE SET NULL): an UPDATE no service wrote."""
    deleted = queue.caseworker.account_id
    queue.session.execute(delete(StaffAccount).where(StaffAccount.id == deleted))
    queue.session.expire_all()
    assert queue.session.scalar(select(func.count()).where(Tip.assignee_id.is_not(None))) == 1
    queue.caseworker = queue.second_lead  # the deleted member asks nothing any more
    queue.assert_exact()
    counts = service.list_queue(queue.session, queue.lead, QueueFilters(assignee=deleted)).counts
    assert set(counts.values()) == {0}


def test_tips_in_a_restricted_case_are_counted_for_its_members_only(queue: Queue) -> None:
    session = queue.session
    session.execute(update(Tip).where(Tip.id.in_(queue.tips[:3])).values(status=TipStatus.VERIFIED))
    restricted = CaseCreate(title="Restricted", tip_ids=queue.tips[:3], restricted=True)
    case = cases_service.create_case(session, queue.lead, restricted, queue.server_secrets)
    # A second restricted case holding one of the same tips: hidden once, not twice.
    cases_service.create_case(
        session,
        queue.lead,
        CaseCreate(title="Also", tip_ids=queue.tips[1:2], restricted=True),
        queue.server_secrets,
    )
    member, outsider = queue.lead, queue.caseworker
    assert service.list_queue(session, member).counts["verified"] == 3
    assert service.list_queue(session, outsider).counts["verified"] == 0
    assert service.list_queue(session, queue.second_lead).counts["verified"] == 0
    queue.assert_exact()
    cases_service.set_restricted(session, member, case.id, False)
    # All three but the one still in "Also".
    assert service.list_queue(session, queue.second_lead).counts["verified"] == 2
    queue.assert_exact()


def test_roles_without_the_queue_count_nothing(queue: Queue, organisation: Organisation) -> None:
    for role in (Role.ADMIN, Role.AUDITOR):
        outsider = principal_of(organisation[role], {})
        assert set(service.list_queue(queue.session, outsider).counts.values()) == {0}


def test_a_caller_without_the_key_counts_no_tip_by_tactic(queue: Queue) -> None:
    keyless = with_keys(queue.caseworker, {})
    by_tactic = service.list_queue(queue.session, keyless, QueueFilters(tactic="surveillance")).counts
    assert set(by_tactic.values()) == {0}
    assert sum(service.list_queue(queue.session, keyless).counts.values()) == len(ANSWERS)


def test_changes_are_folded_into_the_counters_as_the_queue_is_read(queue: Queue) -> None:
    assert queue.session.scalar(select(func.count()).select_from(TipQueueCountChange))
    service.list_queue(queue.session, queue.lead)
    assert queue.session.scalar(select(func.count()).select_from(TipQueueCountChange)) == 0
    assert queue.session.scalar(
        select(func.sum(TipQueueCount.tip_count)).where(
            TipQueueCount.first_tag == b"", TipQueueCount.second_tag == b""
        )
    ) == len(ANSWERS)


@pytest.fixture
def other_connection(backend: Backend) -> Iterator[Connection]:
    with backend.engine.connect() as connection:
        yield connection
        connection.rollback()


@pytest.mark.postgresql_only
def test_counts_are_exact_while_another_transaction_folds(queue: Queue, other_connection: Connection) -> None:
    """On PostgreSQL a reader that cannot take the fold lock adds the pending changes itself.
    (SQLite runs one writer at a time: no two folds overlap there.)"""
    other_connection.execute(select(func.pg_advisory_xact_lock(QUEUE_COUNTS_FOLD_LOCK_KEY)))
    workflow.reject(queue.session, queue.caseworker, queue.tips[0], RejectionReason.SPAM)
    queue.assert_exact()
    assert queue.session.scalar(select(func.count()).select_from(TipQueueCountChange))


def test_the_queue_count_triggers_are_in_place(backend: Backend) -> None:
    """A batch-mode rebuild of `tips` or `tip_tags` on SQLite silently drops their triggers."""
    query = (
        "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"
        if backend.name == "sqlite"
        else "SELECT event_object_table, trigger_name FROM information_schema.triggers "
        "WHERE trigger_schema = current_schema()"
    )
    with backend.engine.connect() as connection:
        found = {(table, name) for table, name in connection.execute(text(query))}
    assert found >= QUEUE_COUNT_TRIGGERS


def test_tags_are_never_updated_in_place(queue: Queue) -> None:
    with pytest.raises(DBAPIError, match="never updated"):
        queue.session.execute(update(TipTag).where(TipTag.tip_id == queue.tips[0]).values(tag=b"x" * 32))


def drop_trigger(session: Session, table: str, trigger: str) -> None:
    """Dropped inside the test's transaction, which rolls back: the other tests keep it."""
    on_table = f" ON {table}" if session.get_bind().dialect.name == "postgresql" else ""
    session.execute(text(f"DROP TRIGGER {trigger}{on_table}"))


def country_tag(queue: Queue, country: str) -> bytes:
    return tags.tags_for(queue.lead, "country", [country])[0]


WRITES_BY_TRIGGER: dict[str, Callable[[Queue], object]] = {
    "tip_queue_counts_tips_inserted": lambda q: make_tip(q.session, q.server_secrets, host_country="IE"),
    "tip_queue_counts_tip_rekeyed": lambda q: workflow.claim(q.session, q.lead, q.tips[1]),
    "tip_queue_counts_tip_deleting": lambda q: q.session.execute(delete(Tip).where(Tip.id == q.tips[2])),
    "tip_queue_counts_tags_inserted": lambda q: reading.read_tip(
        q.session, q.lead, q.tips[6], integrity_key=q.server_secrets.key_integrity_key
    ),
    "tip_queue_counts_tags_deleted": lambda q: q.session.execute(
        delete(TipTag).where(TipTag.tip_id == q.tips[2])
    ),
    "tip_queue_counts_tag_updated": lambda q: q.session.execute(  # tip 0 said IE; its tag now says NL
        update(TipTag)
        .where(TipTag.tip_id == q.tips[0], TipTag.tag == country_tag(q, "IE"))
        .values(tag=country_tag(q, "NL"))
    ),
}


@pytest.mark.parametrize(("table", "trigger"), sorted(QUEUE_COUNT_TRIGGERS))
def test_without_any_one_trigger_the_counts_go_wrong(queue: Queue, table: str, trigger: str) -> None:
    """The exactness checks above can fail: each trigger is needed by some write."""
    service.list_queue(queue.session, queue.lead)  # folded, so what follows is the write alone
    drop_trigger(queue.session, table, trigger)
    WRITES_BY_TRIGGER[trigger](queue)
    assert mismatches(queue.session, queue.principals) != []


@pytest.fixture
def committed_organisation(
    data_dir: Path, committed_database_url: str | None
) -> Iterator[tuple[Database, ServerSecrets, Principal]]:
    settings = Settings(
        data_dir=data_dir / "org",
        argon2=CHEAP_ARGON2,
        database_url=SecretStr(committed_database_url) if committed_database_url else None,
    )
    database = Database.from_settings(settings)
    created = init_organisation(settings, database)
    with database.transaction() as session:
        lead = StaffAccount(username="lead", role=Role.LEAD, created_on=dt.date.today())
        session.add(lead)
        session.flush()
    principal = Principal(
        account_id=lead.id,
        username="lead",
        role=Role.LEAD,
        session_id=uuid.uuid4(),
        keys=UnlockedKeys(personal=sealing.generate_private_key(), intake={1: created.intake_private}),
        reauthenticated_at=dt.datetime.now(dt.UTC),
        csrf_token="",
    )
    yield database, load_server_secrets(settings.secrets_dir), principal
    database.engine.dispose()


def index_as_opening_does(session: Session, principal: Principal, tip_id: uuid.UUID) -> None:
    """What opening a tip writes (its blind-index tags), without loading its messages and files,
    whose columns from later revisions a downgraded schema lacks."""
    tip, data_key = reading.open_tip(session, principal, tip_id)
    answers = json.loads(
        TIP_ANSWERS.open(
            data_key, tip.answers_encrypted, row_id=str(tip.id), key_version=tip.content_key_version
        )
    )
    intake_private = principal.intake_private_key(tip.intake_key_version)
    assert intake_private is not None
    tags.index_tip(session, tip, answers, intake_private)


def test_the_migration_counts_the_tips_already_there_and_downgrades(
    committed_organisation: tuple[Database, ServerSecrets, Principal],
) -> None:
    database, server_secrets, lead = committed_organisation
    with database.transaction() as session:
        tip_ids = [
            make_tip(session, server_secrets, tactics=tactics, host_country=country, urgent=urgent)[0]
            for tactics, country, urgent in ANSWERS
        ]
        for tip_id in tip_ids[:5]:
            reading.read_tip(session, lead, tip_id, integrity_key=server_secrets.key_integrity_key)
        workflow.claim(session, lead, tip_ids[0])
        workflow.reject(session, lead, tip_ids[0], RejectionReason.SPAM)
        workflow.claim(session, lead, tip_ids[1])

    migrate(database.engine, "8d2e4b6a1c93", downgrade=True)
    tables = set(inspect(database.engine).get_table_names())
    assert not tables & {"tip_queue_counts", "tip_queue_count_changes"}
    # The models are head's: a column added to `tips` after that revision, and the outbox these
    # writes append to, are lent for them and taken away again before the upgrade adds them for real.
    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE tips ADD COLUMN search_indexed BOOLEAN NOT NULL DEFAULT false"))
        NotificationEvent.__table__.create(connection)
    with database.transaction() as session:  # written with no trigger to see it
        make_tip(session, server_secrets, tactics=["surveillance"], host_country="IE", urgent=True)
        index_as_opening_does(session, lead, tip_ids[5])
        workflow.claim(session, lead, tip_ids[2])
        session.execute(delete(Tip).where(Tip.id == tip_ids[3]))
    with database.engine.begin() as connection:
        connection.execute(text("ALTER TABLE tips DROP COLUMN search_indexed"))
        NotificationEvent.__table__.drop(connection)

    upgrade_to_head(database.engine)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(TipQueueCountChange)) == 0
        assert mismatches(session, [lead]) == []
        assert sum(service.list_queue(session, lead).counts.values()) == len(ANSWERS)


def test_concurrent_submissions_steps_and_reads_neither_deadlock_nor_miscount(
    committed_organisation: tuple[Database, ServerSecrets, Principal],
) -> None:
    """Writers only append changes and one reader at a time folds them: nobody waits on a
    counter row (PostgreSQL; SQLite runs one writer at a time and waits for the lock)."""
    database, server_secrets, lead = committed_organisation
    barrier = threading.Barrier(6)

    def work(worker: int) -> None:
        barrier.wait()
        for round_number in range(4):
            with database.transaction() as session:
                tip_id, _ = make_tip(
                    session,
                    server_secrets,
                    tactics=["surveillance"],
                    host_country="IE",
                    urgent=(worker + round_number) % 2 == 0,
                )
            with database.transaction() as session:
                reading.read_tip(session, lead, tip_id, integrity_key=server_secrets.key_integrity_key)
                if worker % 2:
                    workflow.claim(session, lead, tip_id)
            with database.transaction() as session:
                service.list_queue(session, lead, QueueFilters(tactic="surveillance"))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))
    with database.transaction() as session:
        assert mismatches(session, [lead]) == []
        assert sum(service.list_queue(session, lead).counts.values()) == 24
