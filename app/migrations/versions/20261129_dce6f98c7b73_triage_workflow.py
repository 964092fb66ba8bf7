"""Triage workflow: assignee, two-person verification, rejection reasons, history, notes, filter tags.

Revision ID: dce6f98c7b73
Revises: d4202a71d041
Create Date: 2026-11-29 15:33:29.628447
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'dce6f98c7b73'
down_revision: str | None = 'd4202a71d041'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('tip_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=32), nullable=True),
    sa.Column('to_status', sa.String(length=32), nullable=True),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('detail', sa.String(length=64), nullable=True),
    sa.Column('happened_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['staff_accounts.id'], name=op.f('fk_tip_events_actor_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_events_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_events'))
    )
    with op.batch_alter_table('tip_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_events_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_notes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('author_id', sa.Uuid(), nullable=True),
    sa.Column('written_on', sa.Date(), nullable=False),
    sa.Column('body_encrypted', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['staff_accounts.id'], name=op.f('fk_tip_notes_author_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_notes_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_notes'))
    )
    with op.batch_alter_table('tip_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_notes_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_tags',
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('tag', sa.LargeBinary(length=32), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_tags_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tip_id', 'tag', name=op.f('pk_tip_tags'))
    )
    with op.batch_alter_table('tip_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_tags_tag'), ['tag'], unique=False)

    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.add_column(sa.Column('assignee_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('verification_proposed_by_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('rejection_reason', sa.Enum('spam', 'insufficient', 'out_of_scope', 'duplicate', name='rejection_reason', native_enum=False, create_constraint=True, length=32), nullable=True))
        batch_op.add_column(sa.Column('duplicate_of_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('submitter_activity', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('indexed', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f('ix_tips_assignee_id'), ['assignee_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_tips_verification_proposed_by_id_staff_accounts'), 'staff_accounts', ['verification_proposed_by_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_tips_duplicate_of_id_tips'), 'tips', ['duplicate_of_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_tips_assignee_id_staff_accounts'), 'staff_accounts', ['assignee_id'], ['id'], ondelete='SET NULL')

    # The queue's keyset order, urgent first: DESC in the index itself, so that one index scan
    # serves ORDER BY urgent DESC, received_on, id LIMIT n. Created outside the batch block:
    # SQLite's batch mode rebuilds the table and cannot carry an expression index across.
    # A later batch migration of `tips` must drop these two first and create them again after.
    op.create_index('ix_tips_queue_order', 'tips', [sa.text('urgent DESC'), 'received_on', 'id'])
    op.create_index('ix_tips_status_queue_order', 'tips', ['status', sa.text('urgent DESC'), 'received_on', 'id'])


def downgrade() -> None:
    op.drop_index('ix_tips_status_queue_order', table_name='tips')
    op.drop_index('ix_tips_queue_order', table_name='tips')
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tips_assignee_id_staff_accounts'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_tips_duplicate_of_id_tips'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_tips_verification_proposed_by_id_staff_accounts'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_tips_assignee_id'))
        batch_op.drop_column('indexed')
        batch_op.drop_column('submitter_activity')
        batch_op.drop_column('duplicate_of_id')
        batch_op.drop_column('rejection_reason')
        batch_op.drop_column('verification_proposed_by_id')
        batch_op.drop_column('assignee_id')

    with op.batch_alter_table('tip_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_tags_tag'))

    op.drop_table('tip_tags')
    with op.batch_alter_table('tip_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_notes_tip_id'))

    op.drop_table('tip_notes')
    with op.batch_alter_table('tip_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_events_tip_id'))

    op.drop_table('tip_events')
