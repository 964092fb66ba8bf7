"""Positions in an append-only history (a tip's events and messages, a case's timeline).

The next position is one more than the highest so far, read in the writer's transaction. Two
writers appending to one history are serialised by the row lock each takes on the parent (the
tip or the case) first, and the (parent, position) primary key refuses a duplicate outright,
so a race can fail a request but never reorder or merge a history.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session


def next_position(session: Session, position: InstrumentedAttribute[int], *where: ColumnElement[bool]) -> int:
    """One more than the highest ``position`` among the rows ``where`` selects; 1 for the first."""
    highest: Any = session.scalar(select(func.max(position)).where(*where))
    return int(highest or 0) + 1
