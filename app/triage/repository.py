"""Tip queries scoped to the caller: handlers never load a tip by bare id."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, delete, false, func, select, true, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.auth.permissions import Permission
from app.auth.service import Principal
from app.cases.repository import tips_hidden_from
from app.intake.models import Tip
from app.triage.models import TipQueueCount, TipQueueCountChange


def tips_visible_to(principal: Principal) -> Select[Tip]:
    """Tips the caller may see in the queue; an empty query for roles without the queue."""
    statement = select(Tip)
    if not principal.can(Permission.VIEW_QUEUE):
        return statement.where(false())
    # A tip in a restricted case is seen by that case's members only.
    return statement.where(Tip.id.not_in(tips_hidden_from(principal)))


def tip_ids_hidden_in_queue_from(principal: Principal) -> Select[uuid.UUID]:
    """The ids `tips_visible_to` leaves out for a caller who may see the queue, each once: tips
    in a restricted case they are not a member of. The queue counts every tip from counters,
    then takes these away, so this is the one list the rule and the counts must agree on."""
    return tips_hidden_from(principal).distinct()


def tips_readable_by(principal: Principal) -> Select[Tip]:
    """Tips whose content the caller may read: the role permits it and the key is unlocked."""
    statement = tips_visible_to(principal)
    if not principal.can(Permission.READ_TIP_CONTENT):
        return statement.where(false())
    unlocked_versions = sorted(principal.keys.intake)
    return statement.where(Tip.intake_key_version.in_(unlocked_versions))


def tip_readable_by(principal: Principal, tip_id: uuid.UUID) -> Select[Tip]:
    return tips_readable_by(principal).where(Tip.id == tip_id)


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
