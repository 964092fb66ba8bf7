"""Key rotation: a content key version beside the sealing version, and rotations in progress.

Rows whose data key is sealed to the intake key get ``content_key_version``:
the version bound into the AAD of their content, which a rotation leaves as
it is while it moves ``intake_key_version`` to the new key. Existing rows were
written under the version that seals them, so the two start equal.

Revision ID: b7c41e0d9a52
Revises: d38e9a8ccaed
Create Date: 2026-11-29 18:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b7c41e0d9a52'
down_revision: str | None = 'd38e9a8ccaed'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ALWAYS_SEALED = ('tips', 'tip_messages', 'cases')


def _drop_queue_indexes() -> None:
    # SQLite's batch mode rebuilds `tips` and cannot carry these expression indexes across
    # (see the triage_workflow migration): dropped first, created again after.
    op.drop_index('ix_tips_status_queue_order', table_name='tips')
    op.drop_index('ix_tips_queue_order', table_name='tips')


def _create_queue_indexes() -> None:
    op.create_index('ix_tips_queue_order', 'tips', [sa.text('urgent DESC'), 'received_on', 'id'])
    op.create_index('ix_tips_status_queue_order', 'tips', ['status', sa.text('urgent DESC'), 'received_on', 'id'])


def upgrade() -> None:
    op.create_table('intake_key_rotations',
    sa.Column('to_version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('from_version', sa.Integer(), nullable=False),
    sa.Column('started_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['from_version'], ['intake_keys.version'],
                            name=op.f('fk_intake_key_rotations_from_version_intake_keys')),
    sa.ForeignKeyConstraint(['to_version'], ['intake_keys.version'],
                            name=op.f('fk_intake_key_rotations_to_version_intake_keys')),
    sa.PrimaryKeyConstraint('to_version', name=op.f('pk_intake_key_rotations')),
    sa.UniqueConstraint('from_version', name=op.f('uq_intake_key_rotations_from_version'))
    )
    _drop_queue_indexes()
    for table in (*_ALWAYS_SEALED, 'tip_attachments'):
        op.add_column(table, sa.Column('content_key_version', sa.Integer(), nullable=True))
        op.execute(f'UPDATE {table} SET content_key_version = intake_key_version')  # noqa: S608 - fixed names
    for table in _ALWAYS_SEALED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('content_key_version', existing_type=sa.Integer(), nullable=False)
    _create_queue_indexes()


def downgrade() -> None:
    # After a rotation the two versions differ, and the schema before this revision knows
    # only one: content would be bound to a version nothing records. Refused, not guessed.
    for table in (*_ALWAYS_SEALED, 'tip_attachments'):
        rotated = op.get_bind().execute(sa.text(
            f'SELECT count(*) FROM {table} WHERE content_key_version != intake_key_version')).scalar()  # noqa: S608
        if rotated:
            raise RuntimeError(f'{table} has rows from before a key rotation: cannot downgrade')
    _drop_queue_indexes()
    for table in (*_ALWAYS_SEALED, 'tip_attachments'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('content_key_version')
    _create_queue_indexes()
    op.drop_table('intake_key_rotations')
