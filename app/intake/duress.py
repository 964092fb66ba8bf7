"""Duress codes: a second code a submitter can give up instead of their receipt.

Threat: the submitter is made to hand over their receipt — by police at a border, by an
officer holding their family, by a relative made to check their phone. Whoever typed the real
receipt would read the caseworkers' replies, answer as the submitter and could delete the
report. A duress code, taken beside the receipt, opens a harmless page instead: the report as
just received, with no replies, and every form on it answering as it would.

What the code does, in the order the follow-up routes see it:
- Opening (`open_duress_code`): the page of a report with status "received" and no replies
  (`duress_view`), the same status code and the same page as a real report in that state. The
  lookup runs for every receipt typed, real or not, so a real receipt and a duress code cost
  the same database reads and key derivations.
- Writing, adding files: accepted with the same answer, and nothing reaches staff; what was
  "sent" is remembered only as its day, inside the code's own sealed state, so that the
  harmless page shows "From you, DAY" afterwards as a real one would (real messages from the
  submitter are never shown back either).
- Deleting: the "deleted" page, and the code opens nothing from then on; the report is kept.
- If the organisation enabled ``duress_flags_report``: the report is marked "submitter may be
  under duress" (`TipDuressFlag`) and staff replies to it are refused, so nothing more reaches
  whoever holds the receipt. Off (the default), using the code writes nothing about the report.

Unlinkable from the database alone (tests/intake/test_duress.py): a `DuressCode` row holds an
HMAC of the code under the receipt pepper (kept outside the database, like the receipt's), a
random id, and its state sealed under a key derived from the code and the pepper; no date, no
tip id, no order (SQLite: no rowid). The tip has no column pointing at it. With a database copy
and no pepper, nothing says which report a code belongs to or that a report has one; with the
pepper too, only a code guessed whole (120 bits) opens its row. What remains is outside the
rows: PostgreSQL's heap keeps insertion order and transaction ids, which place a code's
creation near a report's to someone reading the data files themselves.

A report deleted by its submitter or purged for age leaves its codes' rows behind, opening
nothing (nothing can find them to delete them): a few hundred bytes each.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.orm import Session

from app.crypto import human_codes
from app.crypto.binding import bind
from app.crypto.errors import DecryptionError
from app.intake.models import DURESS_STATE, DuressCode, Tip, TipDuressFlag
from app.intake.receipts import RECEIPT_BITS, normalize_receipt
from app.kit.clock import today

_LOOKUP_LABEL = "daylight/duress-code/v1"
_STATE_KEY_LABEL = "daylight/duress-state-key/v1"
logger = logging.getLogger("daylight.intake")


def duress_lookup_hash(pepper: bytes, typed: str) -> bytes:
    """The stored hash for a typed code; malformed input hashes too (same work, no match).

    Domain-separated from the receipt's hash, so a duress row can never be matched against
    the tips' receipt hashes (or the other way round) by a database reader."""
    digits = normalize_receipt(typed)
    message = (
        bind(_LOOKUP_LABEL, digits) if digits is not None else bind(_LOOKUP_LABEL, "malformed", typed[:200])
    )
    return hmac.new(pepper, message, hashlib.sha256).digest()


def _state_key(pepper: bytes, digits: str) -> bytes:
    return hmac.new(pepper, bind(_STATE_KEY_LABEL, digits), hashlib.sha256).digest()


@dataclass
class DuressState:
    """What only the code opens: its report, and what was done on the harmless page.

    ``sent`` counts the messages "sent" per day (the page lists them as a real one lists a
    submitter's messages: by day, without their text), with no cap, as a real report has none."""

    tip_id: uuid.UUID
    urgent: bool = False
    sent: dict[str, int] = field(default_factory=dict)
    deleted: bool = False

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"tip": str(self.tip_id), "urgent": self.urgent, "sent": self.sent, "deleted": self.deleted},
            sort_keys=True,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DuressState:
        raw = json.loads(data)
        return cls(
            tip_id=uuid.UUID(raw["tip"]),
            urgent=bool(raw["urgent"]),
            sent={str(day): int(count) for day, count in raw["sent"].items()},
            deleted=bool(raw["deleted"]),
        )

    def sent_on(self) -> list[dt.date]:
        return [dt.date.fromisoformat(day) for day in sorted(self.sent) for _ in range(self.sent[day])]


@dataclass
class DuressHolder:
    """A duress code opened: the row that holds its family's state, that state, and its key.

    A code taken with a duress code (the harmless page offers it as the real page does) is an
    alias of the first code of its family: it opens that code's state. Messages "sent" and a
    "deletion" through any code of the family show through all of them, as they would through
    the codes of a real report (a deletion with the receipt retires every code)."""

    row: DuressCode
    state: DuressState
    key: bytes = field(repr=False)

    def save(self) -> None:
        self.row.sealed_state = DURESS_STATE.seal(self.key, self.state.to_bytes(), row_id=str(self.row.id))


def _new_row(session: Session, pepper: bytes, content: bytes) -> str:
    """A new code whose sealed state is ``content`` (a state, or an alias), and the code."""
    code = human_codes.random_code(RECEIPT_BITS)
    digits = normalize_receipt(code)
    assert digits is not None  # noqa: S101 - a fresh code has the receipt's form
    row = DuressCode(id=uuid.uuid4(), lookup_hash=duress_lookup_hash(pepper, code), sealed_state=b"")
    row.sealed_state = DURESS_STATE.seal(_state_key(pepper, digits), content, row_id=str(row.id))
    session.add(row)
    session.flush()
    return code


def create_duress_code(session: Session, tip: Tip, pepper: bytes) -> str:
    """A new duress code for the tip (opened with its receipt), grouped for writing down.

    Each call makes another: a submitter who lost the first can take a new one, and the server
    cannot count a report's codes without linking them to it."""
    return _new_row(session, pepper, DuressState(tip_id=tip.id, urgent=tip.urgent).to_bytes())


def create_alias_code(session: Session, holder: DuressHolder, pepper: bytes) -> str:
    """A new code taken with a duress code: it stands for the same harmless report."""
    alias = {"alias_of": str(holder.row.id), "key": holder.key.hex()}
    return _new_row(session, pepper, json.dumps(alias, sort_keys=True).encode())


def _opened(session: Session, row: DuressCode, key: bytes) -> tuple[DuressCode, bytes, DuressState] | None:
    """The family's state: this row's, or the one its alias names. None for a row that does not
    open or parse (written by someone without the pepper): the same answer as no such code."""
    try:
        raw = json.loads(DURESS_STATE.open(key, row.sealed_state, row_id=str(row.id)))
        if "alias_of" in raw:
            row = session.scalars(
                select(DuressCode).where(DuressCode.id == uuid.UUID(raw["alias_of"])).with_for_update()
            ).one()
            key = bytes.fromhex(raw["key"])
            raw = json.loads(DURESS_STATE.open(key, row.sealed_state, row_id=str(row.id)))
        return row, key, DuressState.from_bytes(json.dumps(raw).encode())
    except (DecryptionError, ValueError, KeyError, TypeError, NoResultFound):
        logger.error("a duress code's state did not open: integrity alert")
        return None


def open_duress_code(session: Session, typed: str, pepper: bytes) -> DuressHolder | None:
    """The duress code typed, if it is one whose report still exists and was not "deleted".

    Called for every receipt typed, so that real receipts and duress codes cost the same. The
    family's row is locked: two pages "sending" at once each count (PostgreSQL)."""
    lookup = duress_lookup_hash(pepper, typed)
    row = session.scalars(
        select(DuressCode).where(DuressCode.lookup_hash == lookup).with_for_update()
    ).first()
    digits = normalize_receipt(typed)
    if row is None or digits is None:
        return None
    opened = _opened(session, row, _state_key(pepper, digits))
    if opened is None:
        return None
    family_row, key, state = opened
    if state.deleted or session.get(Tip, state.tip_id) is None:
        # Its report was deleted (by its submitter, or purged): the code opens nothing, as the
        # receipt opens nothing.
        return None
    return DuressHolder(row=family_row, state=state, key=key)


def record_use(session: Session, holder: DuressHolder, *, flag_report: bool) -> None:
    """Tell staff, if the organisation chose so: the report is marked and replies stop.

    Two first uses at once both insert; the second's conflict (or a report deleted meanwhile)
    is swallowed in a savepoint: a 500 here would tell a duress code from a receipt."""
    if not flag_report or session.get(TipDuressFlag, holder.state.tip_id) is not None:
        return
    with contextlib.suppress(IntegrityError), session.begin_nested():
        session.add(TipDuressFlag(tip_id=holder.state.tip_id, flagged_on=today()))
        session.flush()


def record_message(holder: DuressHolder) -> None:
    """A message "sent" on the harmless page: only its day is counted, for the page to show."""
    day = today().isoformat()
    holder.state.sent[day] = holder.state.sent.get(day, 0) + 1
    holder.save()


def record_deletion(holder: DuressHolder) -> None:
    """The harmless page's report "deleted": no code of the family opens anything from now on."""
    holder.state.deleted = True
    holder.save()


def duress_flagged_on(session: Session, tip_id: uuid.UUID) -> dt.date | None:
    """The day staff were told a duress code of the tip was used, or None."""
    return session.scalar(select(TipDuressFlag.flagged_on).where(TipDuressFlag.tip_id == tip_id))
