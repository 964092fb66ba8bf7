"""Keyset pages of the queue, on both databases: page after page, every tip once and in queue order
(urgent first, then oldest, ties by id), across the urgent tips' end, under filters."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.auth.principal import Principal, UnlockedKeys
from app.crypto import sealing
from app.intake.models import Tip, TipStatus
from app.kit.server_secrets import ServerSecrets
from app.triage import reading, service
from app.triage.schemas import QueueFilters
from tests.conftest import Organisation
from tests.intake.factories import make_tip

DAYS = (dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 2, 1))


@pytest.fixture
def lead(db_session: Session, server_secrets: ServerSecrets, organisation: Organisation) -> Principal:
    member = organisation[Role.LEAD]
    principal = Principal(
        account_id=member.account.id,
        username=member.username,
        role=Role.LEAD,
        session_id=uuid.uuid4(),
        keys=UnlockedKeys(personal=sealing.generate_private_key(), intake={1: organisation.intake.private}),
        reauthenticated_at=dt.datetime.now(dt.UTC),
        csrf_token="",
    )
    for number in range(23):  # few days, so that many tips tie on the day and the id decides
        tactics = ["surveillance"] if number % 3 else ["digital_threats"]
        tip_id, _ = make_tip(db_session, server_secrets, urgent=number % 4 == 0, tactics=tactics)
        db_session.execute(
            update(Tip)
            .where(Tip.id == tip_id)
            .values(
                received_on=DAYS[number % len(DAYS)],
                status=TipStatus.NEW if number % 2 else TipStatus.REJECTED,
            )
        )
        if number % 5:
            reading.read_tip(db_session, principal, tip_id, integrity_key=server_secrets.key_integrity_key)
    db_session.flush()
    return principal


def paged(session: Session, principal: Principal, filters: QueueFilters) -> list[uuid.UUID]:
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = service.list_queue(session, principal, filters.model_copy(update={"cursor": cursor}))
        seen += [item.id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen


def in_queue_order(session: Session, filters: QueueFilters) -> list[uuid.UUID]:
    tips = session.execute(select(Tip.id, Tip.urgent, Tip.received_on, Tip.status)).all()
    chosen = [
        tip
        for tip in tips
        if (filters.status is None or tip.status == filters.status)
        and (filters.urgent is None or tip.urgent == filters.urgent)
    ]
    return [tip.id for tip in sorted(chosen, key=lambda tip: (not tip.urgent, tip.received_on, tip.id))]


@pytest.mark.parametrize("limit", [1, 4])
@pytest.mark.parametrize(
    "filters",
    [
        QueueFilters(),
        QueueFilters(status=TipStatus.NEW),
        QueueFilters(urgent=True),
        QueueFilters(urgent=False),
    ],
)
def test_pages_hold_every_tip_once_in_queue_order(
    db_session: Session, lead: Principal, filters: QueueFilters, limit: int
) -> None:
    filters = filters.model_copy(update={"limit": limit})
    assert paged(db_session, lead, filters) == in_queue_order(db_session, filters)


def test_pages_under_a_tag_filter_follow_the_queue_order(db_session: Session, lead: Principal) -> None:
    everything = paged(db_session, lead, QueueFilters(limit=3))
    tagged = paged(db_session, lead, QueueFilters(tactic="surveillance", limit=3))
    assert tagged
    assert tagged == [tip_id for tip_id in everything if tip_id in set(tagged)]
    assert len(tagged) == sum(
        service.list_queue(db_session, lead, QueueFilters(tactic="surveillance")).counts.values()
    )
