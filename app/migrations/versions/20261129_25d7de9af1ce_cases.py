"""Cases: verified tips grouped, with members, notes, timeline; restricted cases.

Revision ID: 25d7de9af1ce
Revises: dce6f98c7b73
Create Date: 2026-11-29 15:42:18.482525
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '25d7de9af1ce'
down_revision: str | None = 'dce6f98c7b73'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cases',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('ref', sa.String(length=16), nullable=False),
    sa.Column('status', sa.Enum('open', 'investigating', 'referred', 'closed', name='case_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('restricted', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('host_country', sa.String(length=2), nullable=True),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.Column('closed_on', sa.Date(), nullable=True),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('intake_key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('title_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('summary_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('resolution_encrypted', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_accounts.id'], name=op.f('fk_cases_created_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['intake_key_version'], ['intake_keys.version'], name=op.f('fk_cases_intake_key_version_intake_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cases')),
    sa.UniqueConstraint('ref', name=op.f('uq_cases_ref'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_status'), ['status'], unique=False)

    op.create_table('case_events',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('detail', sa.String(length=64), nullable=True),
    sa.Column('happened_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['staff_accounts.id'], name=op.f('fk_case_events_actor_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_events_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_events'))
    )
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_events_case_id'), ['case_id'], unique=False)

    op.create_table('case_members',
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_accounts.id'], name=op.f('fk_case_members_account_id_staff_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_members_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', 'account_id', name=op.f('pk_case_members'))
    )
    with op.batch_alter_table('case_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_members_account_id'), ['account_id'], unique=False)

    op.create_table('case_notes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('author_id', sa.Uuid(), nullable=True),
    sa.Column('written_on', sa.Date(), nullable=False),
    sa.Column('body_encrypted', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['staff_accounts.id'], name=op.f('fk_case_notes_author_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_notes_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_notes'))
    )
    with op.batch_alter_table('case_notes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_notes_case_id'), ['case_id'], unique=False)

    op.create_table('case_tactics',
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('tactic', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_tactics_case_id_cases'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', 'tactic', name=op.f('pk_case_tactics'))
    )
    op.create_table('case_tips',
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_tips_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_case_tips_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id', 'tip_id', name=op.f('pk_case_tips'))
    )
    with op.batch_alter_table('case_tips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_tips_tip_id'), ['tip_id'], unique=False)



def downgrade() -> None:

    with op.batch_alter_table('case_tips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_tips_tip_id'))

    op.drop_table('case_tips')
    op.drop_table('case_tactics')
    with op.batch_alter_table('case_notes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_notes_case_id'))

    op.drop_table('case_notes')
    with op.batch_alter_table('case_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_members_account_id'))

    op.drop_table('case_members')
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_events_case_id'))

    op.drop_table('case_events')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_status'))

    op.drop_table('cases')
