"""Reading the stored events in seq order, straight from the driver: what checkpoints are
computed from and what the verifier reads."""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

from sqlalchemy import Connection, select

from app.audit_log.events import canonical_entry
from app.audit_log.models import AuditEvent, AuditNode

EVENT_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.occurred_at,
    AuditEvent.actor_id,
    AuditEvent.actor,
    AuditEvent.role,
    AuditEvent.action,
    AuditEvent.object_type,
    AuditEvent.object_id,
    AuditEvent.outcome,
    AuditEvent.details,
)
STREAM_BATCH = 10_000
EVENT_SQL = (
    "SELECT seq, occurred_at, actor_id, actor, role, action, object_type, object_id, outcome, "
    "details FROM audit_events"
)


def iter_raw_event_batches(
    connection: Connection, after_seq: int = 0
) -> Generator[list[tuple[Any, ...]], None, None]:
    """Event rows as the driver returns them, in seq order, fetched in batches.

    Straight from the driver's cursor, inside the connection's transaction: no
    ORM objects and no type conversion (canonical_entry reads the stored forms),
    which is most of the cost of verifying a large log. PostgreSQL streams
    through a server-side cursor, so memory stays flat.
    """
    if not connection.in_transaction():
        connection.execute(select(1))  # begin, so the raw cursor reads inside it
    driver_connection: Any = connection.connection.driver_connection
    postgres = connection.dialect.name == "postgresql"
    cursor = (
        driver_connection.cursor(name=f"audit_{uuid.uuid4().hex}") if postgres else driver_connection.cursor()
    )
    try:
        cursor.execute(f"{EVENT_SQL} WHERE seq > {'%s' if postgres else '?'} ORDER BY seq", (after_seq,))
        while batch := cursor.fetchmany(STREAM_BATCH):
            yield batch
    finally:
        cursor.close()


def iter_raw_events(connection: Connection, after_seq: int = 0) -> Generator[tuple[Any, ...], None, None]:
    batches = iter_raw_event_batches(connection, after_seq)
    try:
        for batch in batches:
            yield from batch
    finally:
        batches.close()


def iter_database_entries(
    connection: Connection, *, with_stored_leaves: bool = False
) -> Generator[tuple[int, bytes, bytes | None], None, None]:
    """Every event's canonical entry (and, on request, its stored leaf hash), in seq order.

    The result is closed when the generator is: a verifier that stops early must
    not leave a PostgreSQL server-side cursor open.
    """
    if not with_stored_leaves:
        for row in iter_raw_events(connection):
            yield row[0], canonical_entry(*row), None
        return
    statement = (
        select(*EVENT_COLUMNS, AuditNode.hash)
        .outerjoin(AuditNode, (AuditNode.level == 0) & (AuditNode.index == AuditEvent.seq - 1))
        .order_by(AuditEvent.seq)
        .execution_options(yield_per=STREAM_BATCH)
    )
    with connection.execute(statement) as rows:
        for row in rows:
            yield row[0], canonical_entry(*row[:10]), row[10]
