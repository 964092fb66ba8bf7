"""The queue's counters: trigger-kept counts per (tags, status, urgency, assignee), folded here."""

from __future__ import annotations

from sqlalchemy import delete, func, select, true, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.triage.models import TipQueueCount, TipQueueCountChange

# Any constant distinct from the other advisory locks (audit checkpoint, purge).
QUEUE_COUNTS_FOLD_LOCK_KEY = 0x6461796C69676876

_COUNT_KEY = ("first_tag", "second_tag", "status", "urgent", "assignee_key")


def fold_queue_count_changes(session: Session) -> None:
    """Add the changes the triggers appended to ``tip_queue_counts`` and delete them, in the
    caller's transaction; keys whose count reaches zero are deleted.

    Readers add the changes not folded yet themselves, so skipping a fold never makes a count
    wrong. On PostgreSQL one transaction folds at a time and the others skip: folders then never
    wait on each other's counter rows, and writers never touch those rows at all.
    """
    changes = TipQueueCountChange
    key_columns = [getattr(changes, name) for name in _COUNT_KEY]
    if session.get_bind().dialect.name == "postgresql":
        if not session.scalar(select(func.pg_try_advisory_xact_lock(QUEUE_COUNTS_FOLD_LOCK_KEY))):
            return
        # One statement: exactly the rows this DELETE removed are added, however many writers
        # commit meanwhile (a separate SELECT and DELETE could each see a different set).
        moved = delete(changes).returning(*key_columns, changes.change).cte("moved")
        per_key = (
            select(*(moved.c[name] for name in _COUNT_KEY), func.sum(moved.c.change))
            .group_by(*(moved.c[name] for name in _COUNT_KEY))
            .having(func.sum(moved.c.change) != 0)
        )
        upsert: postgresql.Insert | sqlite.Insert = (
            postgresql.insert(TipQueueCount).from_select([*_COUNT_KEY, "tip_count"], per_key).add_cte(moved)
        )
    else:
        # SQLite runs one writer at a time: nothing is appended between this read and the DELETE.
        # (The WHERE is SQLite's: an upsert's SELECT needs one to parse.)
        per_key = (
            select(*key_columns, func.sum(changes.change))
            .where(true())
            .group_by(*key_columns)
            .having(func.sum(changes.change) != 0)
        )
        upsert = sqlite.insert(TipQueueCount).from_select([*_COUNT_KEY, "tip_count"], per_key)
    folded = upsert.on_conflict_do_update(
        index_elements=list(_COUNT_KEY),
        set_={"tip_count": TipQueueCount.tip_count + upsert.excluded.tip_count},
    ).returning(*(getattr(TipQueueCount, name) for name in _COUNT_KEY), TipQueueCount.tip_count)
    emptied = [tuple(row[:-1]) for row in session.execute(folded) if row[-1] == 0]
    if session.get_bind().dialect.name != "postgresql":
        session.execute(delete(changes).execution_options(synchronize_session=False))
    if emptied:
        # A purged tip's tags and state must not outlive it as a row counting zero tips.
        session.execute(
            delete(TipQueueCount)
            .where(tuple_(*(getattr(TipQueueCount, name) for name in _COUNT_KEY)).in_(emptied))
            .execution_options(synchronize_session=False)
        )
