"""Blob chunks: attachment ciphertext in the database, for several app nodes.

Revision ID: d38e9a8ccaed
Revises: fe3ff38574fd
Create Date: 2026-11-29 16:34:53.477711
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'd38e9a8ccaed'
down_revision: str | None = 'fe3ff38574fd'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('blob_chunks',
    sa.Column('blob_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('blob_id', 'position', name=op.f('pk_blob_chunks'))
    )


def downgrade() -> None:

    op.drop_table('blob_chunks')
