"""Recording audit events, in the transaction of the action they describe.

The canonical encoding below is what the Merkle tree commits to. It covers
every column, so no edit to a stored event goes unnoticed by `audit verify`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from json.encoder import encode_basestring as _json_string  # C-accelerated

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent

ENTRY_FORMAT = "daylight-audit-event/v1"
# Any constant: the key of the PostgreSQL advisory lock that serialises appends.
APPEND_LOCK_KEY = 0x6461796C69676874  # "daylight"

DetailValue = str | int | bool | None


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a staff member, or None for the system (a CLI run by the operator)."""

    id: uuid.UUID | None
    username: str | None
    role: str | None


SYSTEM = Actor(id=None, username=None, role="system")


def canonical_details(details: Mapping[str, DetailValue]) -> str:
    return json.dumps(dict(details), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_time(moment: dt.datetime) -> str:
    utc = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return utc.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SQLITE_TIME_LENGTH = len("2026-01-01 00:00:00.000000")


def _time_text(value: dt.datetime | str) -> str:
    # SQLite hands back the stored text "YYYY-MM-DD HH:MM:SS.ffffff" (UTC); the
    # ORM and PostgreSQL hand back datetimes. Both encode to the same text.
    if isinstance(value, str):
        if len(value) == _SQLITE_TIME_LENGTH and value[10] == " ":
            return f"{value[:10]}T{value[11:]}Z"
        return format_time(dt.datetime.fromisoformat(value))
    return format_time(value)


def _actor_text(value: uuid.UUID | str | None) -> str | None:
    if value is None or isinstance(value, uuid.UUID):
        return None if value is None else str(value)
    if len(value) == 32:  # SQLite's stored hex form
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}".lower()
    return str(uuid.UUID(value))


def canonical_entry(
    seq: int,
    occurred_at: dt.datetime | str,
    actor_id: uuid.UUID | str | None,
    actor: str | None,
    role: str | None,
    action: str,
    object_type: str | None,
    object_id: str | None,
    outcome: str,
    details: str,
) -> bytes:
    """The leaf the Merkle tree commits to: every column, in a fixed order, as compact JSON.

    Byte for byte what ``json.dumps([...], separators=(",", ":"), ensure_ascii=False)`` gives,
    assembled by hand around the C string encoder: verification encodes every event
    of the log, and the general encoder costs most of its time.
    """
    return (
        f'["{ENTRY_FORMAT}",{int(seq)},{_json_string(_time_text(occurred_at))},'
        f"{_json_or_null(_actor_text(actor_id))},{_json_or_null(actor)},{_json_or_null(role)},"
        f"{_json_string(action)},{_json_or_null(object_type)},{_json_or_null(object_id)},"
        f"{_json_string(outcome)},{_json_string(details)}]"
    ).encode()


def _json_or_null(value: str | None) -> str:
    return "null" if value is None else _json_string(value)


def entry_of(event: AuditEvent) -> bytes:
    return canonical_entry(
        event.seq,
        event.occurred_at,
        event.actor_id,
        event.actor,
        event.role,
        event.action,
        event.object_type,
        event.object_id,
        event.outcome,
        event.details,
    )


def lock_for_append(session: Session) -> None:
    """Serialise appends, so sequence numbers have no gaps and no duplicates.

    SQLite transactions already hold the write lock (BEGIN IMMEDIATE); on
    PostgreSQL a transaction-scoped advisory lock does it.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    object_type: str | None = None,
    object_id: object = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, DetailValue] | None = None,
    now: dt.datetime | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction: the action and its event commit together."""
    lock_for_append(session)
    last = session.scalar(select(func.max(AuditEvent.seq))) or 0
    event = AuditEvent(
        seq=last + 1,
        occurred_at=now or dt.datetime.now(dt.UTC),
        actor_id=actor.id,
        actor=actor.username,
        role=actor.role,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        outcome=outcome.value,
        details=canonical_details(details or {}),
    )
    session.add(event)
    session.flush()
    return event
