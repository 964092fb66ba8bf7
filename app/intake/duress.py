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

import datetime as dt
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.crypto import human_codes
from app.crypto.binding import bind
from app.intake.models import DURESS_STATE, DuressCode, Tip, TipDuressFlag
from app.intake.receipts import RECEIPT_BITS, normalize_receipt
from app.kit.clock import today

_LOOKUP_LABEL = "daylight/duress-code/v1"
_STATE_KEY_LABEL = "daylight/duress-state-key/v1"
# A report's harmless page lists at most this many "sent" days: the state stays small.
_MAX_REMEMBERED_MESSAGES = 50


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
    """What only the code opens: its report, and what was done on the harmless page."""

    tip_id: uuid.UUID
    sent_on: list[dt.date] = field(default_factory=list)
    deleted: bool = False

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "tip": str(self.tip_id),
                "sent": [day.isoformat() for day in self.sent_on],
                "deleted": self.deleted,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DuressState:
        raw = json.loads(data)
        return cls(
            tip_id=uuid.UUID(raw["tip"]),
            sent_on=[dt.date.fromisoformat(day) for day in raw["sent"]],
            deleted=bool(raw["deleted"]),
        )


@dataclass
class DuressHolder:
    """A duress code opened: its row, its state and the key to seal the state again."""

    row: DuressCode
    state: DuressState
    key: bytes = field(repr=False)

    def save(self) -> None:
        self.row.sealed_state = DURESS_STATE.seal(self.key, self.state.to_bytes(), row_id=str(self.row.id))


def create_duress_code(session: Session, tip_id: uuid.UUID, pepper: bytes) -> str:
    """A new duress code for the tip, grouped for writing down.

    Each call makes another: a submitter who lost the first can take a new one, and the server
    cannot count a report's codes without linking them to it."""
    code = human_codes.random_code(RECEIPT_BITS)
    digits = normalize_receipt(code)
    assert digits is not None  # noqa: S101 - a fresh code has the receipt's form
    row = DuressCode(id=uuid.uuid4(), lookup_hash=duress_lookup_hash(pepper, code), sealed_state=b"")
    holder = DuressHolder(row=row, state=DuressState(tip_id=tip_id), key=_state_key(pepper, digits))
    holder.save()
    session.add(row)
    session.flush()
    return code


def open_duress_code(session: Session, typed: str, pepper: bytes) -> DuressHolder | None:
    """The duress code typed, if it is one whose report still exists and was not "deleted".

    Called for every receipt typed, so that real receipts and duress codes cost the same."""
    lookup = duress_lookup_hash(pepper, typed)
    row = session.scalars(select(DuressCode).where(DuressCode.lookup_hash == lookup)).first()
    digits = normalize_receipt(typed)
    if row is None or digits is None:
        return None
    key = _state_key(pepper, digits)
    state = DuressState.from_bytes(DURESS_STATE.open(key, row.sealed_state, row_id=str(row.id)))
    if state.deleted or session.get(Tip, state.tip_id) is None:
        # Its report was deleted (by its submitter, or purged): the code opens nothing, as the
        # receipt opens nothing.
        return None
    return DuressHolder(row=row, state=state, key=key)


def record_use(session: Session, holder: DuressHolder, *, flag_report: bool) -> None:
    """Tell staff, if the organisation chose so: the report is marked and replies stop."""
    if not flag_report:
        return
    if session.get(TipDuressFlag, holder.state.tip_id) is None:
        session.add(TipDuressFlag(tip_id=holder.state.tip_id, flagged_on=today()))
        session.flush()


def record_message(holder: DuressHolder) -> None:
    """A message "sent" on the harmless page: only its day is kept, for the page to show."""
    holder.state.sent_on = [*holder.state.sent_on, today()][-_MAX_REMEMBERED_MESSAGES:]
    holder.save()


def record_deletion(holder: DuressHolder) -> None:
    """The harmless page's report "deleted": the code opens nothing from now on."""
    holder.state.deleted = True
    holder.save()


def duress_flagged_on(session: Session, tip_id: uuid.UUID) -> dt.date | None:
    """The day staff were told a duress code of the tip was used, or None."""
    return session.scalar(select(TipDuressFlag.flagged_on).where(TipDuressFlag.tip_id == tip_id))
