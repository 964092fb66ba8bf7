"""The caseworker's desk: labels, saved views and the keyed search index.

``labels`` hold an organisation's label names sealed like content (their own data key sealed to
the intake key); ``tip_labels``/``case_labels`` attach them. ``saved_views`` hold a member's named
queue filters, sealed the same way. ``tip_search_terms`` is the keyed search index (truncated
HMACs of words under a key derived from the intake private key); ``tips.search_indexed`` says
whether a tip's terms are current. Existing tips start unindexed: the next key holder's queue
writes their terms (and their tags again, now with language), without a full read of each.

The column is added with a plain ADD COLUMN, never a batch rebuild: rebuilding ``tips`` on
SQLite would drop the queue-count triggers (migration 3f1c9a7e5b20).

Revision ID: b8d4e2f6a0c1
Revises: e4f1a2b3c5d6
Create Date: 2026-12-07 02:15:56.754791
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b8d4e2f6a0c1'
down_revision: str | None = 'e4f1a2b3c5d6'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('labels',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('retired_on', sa.Date(), nullable=True),
    sa.Column('intake_key_version', sa.Integer(), nullable=False),
    sa.Column('content_key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('name_encrypted', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_accounts.id'], name=op.f('fk_labels_created_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['intake_key_version'], ['intake_keys.version'], name=op.f('fk_labels_intake_key_version_intake_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_labels'))
    )
    op.create_table('saved_views',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.Column('intake_key_version', sa.Integer(), nullable=False),
    sa.Column('content_key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('filters_encrypted', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_accounts.id'], name=op.f('fk_saved_views_account_id_staff_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['intake_key_version'], ['intake_keys.version'], name=op.f('fk_saved_views_intake_key_version_intake_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_saved_views'))
    )
    with op.batch_alter_table('saved_views', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_saved_views_account_id'), ['account_id'], unique=False)

    op.create_table('case_labels',
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('label_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_labels_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], name=op.f('fk_case_labels_label_id_labels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', 'label_id', name=op.f('pk_case_labels'))
    )
    with op.batch_alter_table('case_labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_labels_label_id'), ['label_id'], unique=False)

    op.create_table('tip_labels',
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('label_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['label_id'], ['labels.id'], name=op.f('fk_tip_labels_label_id_labels'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_labels_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tip_id', 'label_id', name=op.f('pk_tip_labels'))
    )
    with op.batch_alter_table('tip_labels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_labels_label_id'), ['label_id'], unique=False)

    op.create_table('tip_search_terms',
    sa.Column('term', sa.LargeBinary(length=16), nullable=False),
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_search_terms_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('term', 'tip_id', name=op.f('pk_tip_search_terms'))
    )
    with op.batch_alter_table('tip_search_terms', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_search_terms_tip_id'), ['tip_id'], unique=False)

    op.add_column('tips', sa.Column('search_indexed', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index('ix_tips_received_order', 'tips', ['received_on', 'id'], unique=False)
    op.create_index('ix_tips_activity_order', 'tips', ['last_activity_on', 'id'], unique=False)
    op.create_index(
        'ix_tips_awaiting_index', 'tips', ['id'], unique=False,
        postgresql_where=sa.text('search_indexed = false'), sqlite_where=sa.text('search_indexed = 0'),
    )
    # Tags written before language was a filter are written again, with it, by the backfill.
    op.execute(sa.text("UPDATE tips SET indexed = false"))



def downgrade() -> None:
    # Tips tagged before this revision keep their tags: marked indexed again, as the code of the
    # revision below expects of a tip with tags (it writes them once and never deletes).
    op.execute(sa.text("UPDATE tips SET indexed = true WHERE id IN (SELECT tip_id FROM tip_tags)"))
    op.drop_index('ix_tips_awaiting_index', table_name='tips')
    op.drop_index('ix_tips_activity_order', table_name='tips')
    op.drop_index('ix_tips_received_order', table_name='tips')
    # SQLite 3.35+ drops a column in place, keeping the queue-count triggers on ``tips``.
    op.drop_column('tips', 'search_indexed')

    with op.batch_alter_table('tip_search_terms', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_search_terms_tip_id'))

    op.drop_table('tip_search_terms')
    with op.batch_alter_table('tip_labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_labels_label_id'))

    op.drop_table('tip_labels')
    with op.batch_alter_table('case_labels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_labels_label_id'))

    op.drop_table('case_labels')
    with op.batch_alter_table('saved_views', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_saved_views_account_id'))

    op.drop_table('saved_views')
    op.drop_table('labels')
