"""Recording audit events, in the transaction of the action they describe.

The canonical encoding below is what the Merkle tree commits to. It covers
every column, so no edit to a stored event goes unnoticed by `audit verify`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from hashlib import sha256
from json.encoder import encode_basestring as _json_string  # C-accelerated
from typing import Any

from sqlalchemy import Insert, Table, bindparam, func, insert, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent

ENTRY_FORMAT = "daylight-audit-event/v1"
# Any constant: the key of the PostgreSQL advisory lock that serialises checkpoint writers.
CHECKPOINT_LOCK_KEY = 0x6461796C69676874  # "daylight"
# Far more than concurrent appenders ever race for one number (see record()).
MAX_APPEND_ATTEMPTS = 1000

DetailValue = str | int | bool | None | list[str]


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


def leaf_hashes_of_rows(rows: Iterable[Sequence[Any]]) -> list[bytes]:
    """RFC 9162 leaf hashes of raw event rows, the same as ``leaf_hash(canonical_entry(*row))``.

    The hot loop of verification and checkpointing, with canonical_entry inlined for the
    forms the drivers hand back (SQLite's stored text, PostgreSQL's datetimes and UUIDs).
    Every text value still goes through the JSON string encoder: a value spliced in raw
    could carry quotes that shift bytes between fields, so that an edited row encodes to
    the signed entry of the original one.
    """
    hashes: list[bytes] = []
    add = hashes.append
    quote = _json_string
    head = f'\x00["{ENTRY_FORMAT}",'
    sqlite_time_length = _SQLITE_TIME_LENGTH
    for seq, occurred_at, actor_id, actor, role, action, object_type, object_id, outcome, details in rows:
        if type(occurred_at) is str and len(occurred_at) == sqlite_time_length and occurred_at[10] == " ":
            time_text = f"{occurred_at[:10]}T{occurred_at[11:]}Z"
        else:
            time_text = _time_text(occurred_at)
        if actor_id is None:
            actor_id_json = "null"
        elif type(actor_id) is str and len(actor_id) == 32:  # SQLite's stored hex form
            actor_id_json = quote(
                f"{actor_id[:8]}-{actor_id[8:12]}-{actor_id[12:16]}-{actor_id[16:20]}-{actor_id[20:]}".lower()
            )
        else:
            actor_id_json = _json_or_null(_actor_text(actor_id))
        add(
            sha256(
                f"{head}{int(seq)},{quote(time_text)},{actor_id_json},"
                f"{'null' if actor is None else quote(actor)},{'null' if role is None else quote(role)},"
                f"{quote(action)},{'null' if object_type is None else quote(object_type)},"
                f"{'null' if object_id is None else quote(object_id)},"
                f"{quote(outcome)},{quote(details)}]".encode()
            ).digest()
        )
    return hashes


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


def lock_for_checkpoint(session: Session) -> None:
    """Let one checkpoint writer at a time hash the new events.

    SQLite transactions already hold the write lock (BEGIN IMMEDIATE); on
    PostgreSQL a transaction-scoped advisory lock does it.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHECKPOINT_LOCK_KEY})


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
) -> int:
    """Append one event in the caller's transaction, so the action and its event commit together;
    returns its sequence number.

    Every audited request pays for this, so it is one statement: ``INSERT … SELECT max(seq) + 1``.
    Sequence numbers stay gapless and in commit order without a lock of their own. On SQLite
    the transaction already holds the write lock. On PostgreSQL two appenders that read the
    same max race for one primary key: the second waits at the unique index until the first
    commits or rolls back, then either takes the number (rollback) or inserts nothing
    (``ON CONFLICT DO NOTHING``) and tries again with a fresh READ COMMITTED snapshot, which
    now sees the first event. A number is never used by two events, and never skipped.
    """
    values = {
        "occurred_at": now or dt.datetime.now(dt.UTC),
        "actor_id": actor.id,
        "actor": actor.username,
        "role": actor.role,
        "action": action,
        "object_type": object_type,
        "object_id": None if object_id is None else str(object_id),
        "outcome": outcome.value,
        "details": canonical_details(details or {}),
    }
    statement = _APPEND_STATEMENTS[session.get_bind().dialect.name == "postgresql"]
    for _ in range(MAX_APPEND_ATTEMPTS):
        seq = session.execute(statement, values).scalar_one_or_none()
        if seq is not None:
            return int(seq)
    raise RuntimeError("could not append an audit event: its sequence number stayed contended")


def _append_statement(*, on_conflict_do_nothing: bool) -> Insert:
    table: Table = AuditEvent.__table__  # type: ignore[assignment]  # declared mapped table
    value_columns = [column for column in table.columns if column.name != "seq"]
    next_seq = func.coalesce(func.max(table.c.seq), 0) + 1
    source = select(next_seq, *(bindparam(column.name, type_=column.type) for column in value_columns))
    columns = ["seq", *(column.name for column in value_columns)]
    if on_conflict_do_nothing:
        return (
            postgresql.insert(table)
            .from_select(columns, source)
            .on_conflict_do_nothing(index_elements=["seq"])
            .returning(table.c.seq)
        )
    return insert(table).from_select(columns, source).returning(table.c.seq)


# Built once, indexed by "is PostgreSQL": the compiled forms are cached, so a call costs one execution.
_APPEND_STATEMENTS = (
    _append_statement(on_conflict_do_nothing=False),
    _append_statement(on_conflict_do_nothing=True),
)
