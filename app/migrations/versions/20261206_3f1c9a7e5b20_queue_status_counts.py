"""Queue status counts kept by triggers, so the staff queue does not count every tip per page.

``tip_queue_counts`` holds how many tips share a status, urgency and assignee, per
facet: all tips (both tags empty), the tips with one blind-index tag, and the tips
with both tags of a pair (the queue filters by a tactic *and* a country). Triggers on
``tips`` and ``tip_tags`` append every change to ``tip_queue_count_changes`` in the
writer's own transaction, whichever code path writes: intake, the workflow, the
submitter's deletion, the retention purge, a key rotation's re-indexing, an account
deletion that unassigns tips. The queue folds the changes into the counts as it reads
(``app.triage.repository.fold_queue_count_changes``). Writers only append, so concurrent
submissions never wait on a shared counter row and cannot deadlock on one.

The counts are filled from the existing rows here.

On SQLite a batch-mode rebuild of ``tips`` or ``tip_tags`` (drop the table, create it
again) drops their triggers with it: a later migration that rebuilds either table must
create these triggers again after (``tests/triage/test_queue_counts.py`` fails at head
if one is missing).

Revision ID: 3f1c9a7e5b20
Revises: 8d2e4b6a1c93
Create Date: 2026-12-06 12:00:00.000000
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '3f1c9a7e5b20'
down_revision: str | None = '8d2e4b6a1c93'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The counts' key for "no assignee" (a primary key column cannot be NULL), as in
# app.triage.models.NO_ASSIGNEE; written out in the triggers below as each database stores it.
NO_ASSIGNEE = uuid.UUID(int=0)

# PostgreSQL: inserts on both tables and tag deletions are statement-level, with transition
# tables, so a bulk load or a purge appends one change per key and statement instead of
# one per row. A tip's deletion is a row-level BEFORE trigger: its tags are still there
# (the cascade removes them after), and the tag trigger skips tags of a tip already gone.
# Tag triggers lock their tips FOR SHARE first: a concurrent status change then waits for
# them (or they for it), so each sees the other's committed rows and no facet is counted
# under a status the tip has left.
_POSTGRESQL_UPGRADE = (
    """CREATE FUNCTION tip_queue_facets(facet_tip_id uuid) RETURNS TABLE (first_tag bytea, second_tag bytea)
LANGUAGE sql STABLE AS $$
    SELECT '\\x'::bytea, '\\x'::bytea
    UNION ALL
    SELECT tag, '\\x'::bytea FROM tip_tags WHERE tip_id = facet_tip_id
    UNION ALL
    SELECT a.tag, b.tag FROM tip_tags a JOIN tip_tags b ON b.tip_id = a.tip_id AND a.tag < b.tag
    WHERE a.tip_id = facet_tip_id
$$""",
    """CREATE FUNCTION tip_queue_counts_tips_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
    SELECT gen_random_uuid(), '\\x'::bytea, '\\x'::bytea, status, urgent,
           coalesce(assignee_id, '00000000-0000-0000-0000-000000000000'::uuid), count(*)
    FROM inserted_tips GROUP BY status, urgent, assignee_id;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION tip_queue_counts_tip_rekeyed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
    SELECT gen_random_uuid(), facet.first_tag, facet.second_tag, queue_key.status, queue_key.urgent,
           queue_key.assignee_key, queue_key.change
    FROM tip_queue_facets(NEW.id) AS facet
    CROSS JOIN (VALUES
        (OLD.status, OLD.urgent, coalesce(OLD.assignee_id, '00000000-0000-0000-0000-000000000000'::uuid), -1),
        (NEW.status, NEW.urgent, coalesce(NEW.assignee_id, '00000000-0000-0000-0000-000000000000'::uuid), 1)
    ) AS queue_key (status, urgent, assignee_key, change);
    RETURN NULL;
END $$""",
    """CREATE FUNCTION tip_queue_counts_tip_deleting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
    SELECT gen_random_uuid(), facet.first_tag, facet.second_tag, OLD.status, OLD.urgent,
           coalesce(OLD.assignee_id, '00000000-0000-0000-0000-000000000000'::uuid), -1
    FROM tip_queue_facets(OLD.id) AS facet;
    RETURN OLD;
END $$""",
    """CREATE FUNCTION tip_queue_counts_tags_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tips WHERE id IN (SELECT tip_id FROM inserted_tags) ORDER BY id FOR SHARE;
    INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
    SELECT gen_random_uuid(), facet.first_tag, facet.second_tag, tips.status, tips.urgent,
           coalesce(tips.assignee_id, '00000000-0000-0000-0000-000000000000'::uuid), count(*)
    FROM (
        SELECT added.tip_id, added.tag AS first_tag, '\\x'::bytea AS second_tag FROM inserted_tags added
        UNION ALL
        -- A pair with a tag the tip had, or with another new one (then counted from its greater tag).
        SELECT added.tip_id, least(added.tag, other.tag), greatest(added.tag, other.tag)
        FROM inserted_tags added
        JOIN tip_tags other ON other.tip_id = added.tip_id AND other.tag <> added.tag
        WHERE other.tag < added.tag OR NOT EXISTS (
            SELECT 1 FROM inserted_tags fellow WHERE fellow.tip_id = other.tip_id AND fellow.tag = other.tag)
    ) AS facet
    JOIN tips ON tips.id = facet.tip_id
    GROUP BY facet.first_tag, facet.second_tag, tips.status, tips.urgent, tips.assignee_id;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION tip_queue_counts_tags_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM tips WHERE id IN (SELECT tip_id FROM deleted_tags) ORDER BY id FOR SHARE;
    INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
    SELECT gen_random_uuid(), facet.first_tag, facet.second_tag, tips.status, tips.urgent,
           coalesce(tips.assignee_id, '00000000-0000-0000-0000-000000000000'::uuid), -count(*)
    FROM (
        SELECT removed.tip_id, removed.tag AS first_tag, '\\x'::bytea AS second_tag
        FROM deleted_tags removed
        UNION ALL
        SELECT removed.tip_id, least(removed.tag, kept.tag), greatest(removed.tag, kept.tag)
        FROM deleted_tags removed JOIN tip_tags kept ON kept.tip_id = removed.tip_id
        UNION ALL
        SELECT removed.tip_id, removed.tag, fellow.tag
        FROM deleted_tags removed JOIN deleted_tags fellow
            ON fellow.tip_id = removed.tip_id AND removed.tag < fellow.tag
    ) AS facet
    -- Inner join: the tags of a tip being deleted were counted out by its own trigger.
    JOIN tips ON tips.id = facet.tip_id
    GROUP BY facet.first_tag, facet.second_tag, tips.status, tips.urgent, tips.assignee_id;
    RETURN NULL;
END $$""",
    """CREATE FUNCTION tip_queue_counts_tag_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tip_tags rows are never updated: delete the tag and insert the new one';
END $$""",
    """CREATE TRIGGER tip_queue_counts_tips_inserted AFTER INSERT ON tips
    REFERENCING NEW TABLE AS inserted_tips
    FOR EACH STATEMENT EXECUTE FUNCTION tip_queue_counts_tips_inserted()""",
    """CREATE TRIGGER tip_queue_counts_tip_rekeyed AFTER UPDATE OF status, urgent, assignee_id ON tips
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.urgent IS DISTINCT FROM NEW.urgent
                       OR OLD.assignee_id IS DISTINCT FROM NEW.assignee_id)
    EXECUTE FUNCTION tip_queue_counts_tip_rekeyed()""",
    """CREATE TRIGGER tip_queue_counts_tip_deleting BEFORE DELETE ON tips
    FOR EACH ROW EXECUTE FUNCTION tip_queue_counts_tip_deleting()""",
    """CREATE TRIGGER tip_queue_counts_tags_inserted AFTER INSERT ON tip_tags
    REFERENCING NEW TABLE AS inserted_tags
    FOR EACH STATEMENT EXECUTE FUNCTION tip_queue_counts_tags_inserted()""",
    """CREATE TRIGGER tip_queue_counts_tags_deleted AFTER DELETE ON tip_tags
    REFERENCING OLD TABLE AS deleted_tags
    FOR EACH STATEMENT EXECUTE FUNCTION tip_queue_counts_tags_deleted()""",
    """CREATE TRIGGER tip_queue_counts_tag_updated BEFORE UPDATE ON tip_tags
    FOR EACH ROW EXECUTE FUNCTION tip_queue_counts_tag_updated()""",
)

_POSTGRESQL_FUNCTIONS = (
    'tip_queue_counts_tips_inserted', 'tip_queue_counts_tip_rekeyed', 'tip_queue_counts_tip_deleting',
    'tip_queue_counts_tags_inserted', 'tip_queue_counts_tags_deleted', 'tip_queue_counts_tag_updated',
)
_TRIGGERS = (
    ('tips', 'tip_queue_counts_tips_inserted'), ('tips', 'tip_queue_counts_tip_rekeyed'),
    ('tips', 'tip_queue_counts_tip_deleting'), ('tip_tags', 'tip_queue_counts_tags_inserted'),
    ('tip_tags', 'tip_queue_counts_tags_deleted'), ('tip_tags', 'tip_queue_counts_tag_updated'),
)

# SQLite: row-level triggers, which run one row at a time and see the rows before theirs
# (a tag's AFTER INSERT sees the tags inserted before it, so each pair is counted once,
# when its second tag arrives; an AFTER DELETE sees the tags left). Uuid columns are 32
# hex digits here, as SQLAlchemy stores them.
_SQLITE_UPGRADE = (
    """CREATE TRIGGER tip_queue_counts_tips_inserted AFTER INSERT ON tips BEGIN
        INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
        VALUES (lower(hex(randomblob(16))), x'', x'', NEW.status, NEW.urgent,
                coalesce(NEW.assignee_id, '00000000000000000000000000000000'), 1);
    END""",
    """CREATE TRIGGER tip_queue_counts_tip_rekeyed AFTER UPDATE OF status, urgent, assignee_id ON tips
    WHEN OLD.status IS NOT NEW.status OR OLD.urgent IS NOT NEW.urgent
        OR OLD.assignee_id IS NOT NEW.assignee_id
    BEGIN
        INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
        SELECT lower(hex(randomblob(16))), facet.first_tag, facet.second_tag,
               queue_key.status, queue_key.urgent, queue_key.assignee_key, queue_key.change
        FROM (
            SELECT x'' AS first_tag, x'' AS second_tag
            UNION ALL SELECT tag, x'' FROM tip_tags WHERE tip_id = NEW.id
            UNION ALL SELECT a.tag, b.tag FROM tip_tags a
                JOIN tip_tags b ON b.tip_id = a.tip_id AND a.tag < b.tag WHERE a.tip_id = NEW.id
        ) AS facet
        CROSS JOIN (
            SELECT OLD.status AS status, OLD.urgent AS urgent,
                   coalesce(OLD.assignee_id, '00000000000000000000000000000000') AS assignee_key, -1 AS change
            UNION ALL
            SELECT NEW.status, NEW.urgent, coalesce(NEW.assignee_id, '00000000000000000000000000000000'), 1
        ) AS queue_key;
    END""",
    """CREATE TRIGGER tip_queue_counts_tip_deleting BEFORE DELETE ON tips BEGIN
        INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
        SELECT lower(hex(randomblob(16))), facet.first_tag, facet.second_tag, OLD.status, OLD.urgent,
               coalesce(OLD.assignee_id, '00000000000000000000000000000000'), -1
        FROM (
            SELECT x'' AS first_tag, x'' AS second_tag
            UNION ALL SELECT tag, x'' FROM tip_tags WHERE tip_id = OLD.id
            UNION ALL SELECT a.tag, b.tag FROM tip_tags a
                JOIN tip_tags b ON b.tip_id = a.tip_id AND a.tag < b.tag WHERE a.tip_id = OLD.id
        ) AS facet;
    END""",
    """CREATE TRIGGER tip_queue_counts_tags_inserted AFTER INSERT ON tip_tags BEGIN
        INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
        SELECT lower(hex(randomblob(16))), facet.first_tag, facet.second_tag, tips.status, tips.urgent,
               coalesce(tips.assignee_id, '00000000000000000000000000000000'), 1
        FROM (
            SELECT NEW.tag AS first_tag, x'' AS second_tag
            UNION ALL
            SELECT min(NEW.tag, other.tag), max(NEW.tag, other.tag) FROM tip_tags other
            WHERE other.tip_id = NEW.tip_id AND other.tag != NEW.tag
        ) AS facet
        JOIN tips ON tips.id = NEW.tip_id;
    END""",
    # Inner join on tips: the tags of a tip being deleted were counted out by its own trigger.
    """CREATE TRIGGER tip_queue_counts_tags_deleted AFTER DELETE ON tip_tags BEGIN
        INSERT INTO tip_queue_count_changes (id, first_tag, second_tag, status, urgent, assignee_key, change)
        SELECT lower(hex(randomblob(16))), facet.first_tag, facet.second_tag, tips.status, tips.urgent,
               coalesce(tips.assignee_id, '00000000000000000000000000000000'), -1
        FROM (
            SELECT OLD.tag AS first_tag, x'' AS second_tag
            UNION ALL
            SELECT min(OLD.tag, kept.tag), max(OLD.tag, kept.tag) FROM tip_tags kept
            WHERE kept.tip_id = OLD.tip_id
        ) AS facet
        JOIN tips ON tips.id = OLD.tip_id;
    END""",
    """CREATE TRIGGER tip_queue_counts_tag_updated BEFORE UPDATE ON tip_tags BEGIN
        SELECT RAISE(ABORT, 'tip_tags rows are never updated: delete the tag and insert the new one');
    END""",
)


def _fill_counts_from_existing_rows() -> None:
    tips = sa.table('tips', sa.column('id', sa.Uuid()), sa.column('status', sa.String()),
                    sa.column('urgent', sa.Boolean()), sa.column('assignee_id', sa.Uuid()))
    tags = sa.table('tip_tags', sa.column('tip_id', sa.Uuid()), sa.column('tag', sa.LargeBinary()))
    counts = sa.table('tip_queue_counts', sa.column('first_tag', sa.LargeBinary()),
                      sa.column('second_tag', sa.LargeBinary()), sa.column('status', sa.String()),
                      sa.column('urgent', sa.Boolean()), sa.column('assignee_key', sa.Uuid()),
                      sa.column('tip_count', sa.Integer()))
    no_tag = sa.literal(b'', sa.LargeBinary())
    first, second = tags.alias('first'), tags.alias('second')
    facets = sa.union_all(
        sa.select(tips.c.id.label('tip_id'), no_tag.label('first_tag'), no_tag.label('second_tag')),
        sa.select(tags.c.tip_id, tags.c.tag, no_tag),
        sa.select(first.c.tip_id, first.c.tag, second.c.tag)
        .join(second, sa.and_(second.c.tip_id == first.c.tip_id, first.c.tag < second.c.tag)),
    ).subquery('facets')
    per_key = (
        sa.select(facets.c.first_tag, facets.c.second_tag, tips.c.status, tips.c.urgent,
                  sa.func.coalesce(tips.c.assignee_id, sa.literal(NO_ASSIGNEE, sa.Uuid())), sa.func.count())
        .join_from(facets, tips, tips.c.id == facets.c.tip_id)
        # Grouped by the column, not by the coalesce: PostgreSQL would see two bound parameters.
        .group_by(facets.c.first_tag, facets.c.second_tag, tips.c.status, tips.c.urgent, tips.c.assignee_id)
    )
    op.execute(counts.insert().from_select(
        ['first_tag', 'second_tag', 'status', 'urgent', 'assignee_key', 'tip_count'], per_key))


def upgrade() -> None:
    op.create_table('tip_queue_counts',
    sa.Column('first_tag', sa.LargeBinary(length=32), nullable=False),
    sa.Column('second_tag', sa.LargeBinary(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('assignee_key', sa.Uuid(), nullable=False),
    sa.Column('tip_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('first_tag', 'second_tag', 'status', 'urgent', 'assignee_key',
                            name=op.f('pk_tip_queue_counts'))
    )
    op.create_table('tip_queue_count_changes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('first_tag', sa.LargeBinary(length=32), nullable=False),
    sa.Column('second_tag', sa.LargeBinary(length=32), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('assignee_key', sa.Uuid(), nullable=False),
    sa.Column('change', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_queue_count_changes'))
    )
    # Filled, then the triggers created, in the migration's one transaction: a tip written in
    # between would be in neither. SQLite's write lock already keeps writers out; PostgreSQL
    # is told to, with the lock CREATE TRIGGER would take anyway, taken before the fill.
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:
        op.execute('LOCK TABLE tips, tip_tags IN SHARE ROW EXCLUSIVE MODE')
    _fill_counts_from_existing_rows()
    for statement in _POSTGRESQL_UPGRADE if postgresql else _SQLITE_UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for table, trigger in _TRIGGERS:
        op.execute(f'DROP TRIGGER {trigger} ON {table}' if postgresql else f'DROP TRIGGER {trigger}')
    if postgresql:
        for function in _POSTGRESQL_FUNCTIONS:
            op.execute(f'DROP FUNCTION {function}()')
        op.execute('DROP FUNCTION tip_queue_facets(uuid)')
    op.drop_table('tip_queue_count_changes')
    op.drop_table('tip_queue_counts')
