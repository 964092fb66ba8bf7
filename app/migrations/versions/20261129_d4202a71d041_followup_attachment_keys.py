"""Follow-up attachment keys: a file added with the receipt has its own data key, sealed to the intake key.

Revision ID: d4202a71d041
Revises: d96f3a95607c
Create Date: 2026-11-29 15:14:58.099540
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'd4202a71d041'
down_revision: str | None = 'd96f3a95607c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('tip_attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('intake_key_version', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('sealed_data_key', sa.LargeBinary(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_tip_attachments_intake_key_version_intake_keys'), 'intake_keys', ['intake_key_version'], ['version'])


def downgrade() -> None:
    with op.batch_alter_table('tip_attachments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_tip_attachments_intake_key_version_intake_keys'), type_='foreignkey')
        batch_op.drop_column('sealed_data_key')
        batch_op.drop_column('intake_key_version')
