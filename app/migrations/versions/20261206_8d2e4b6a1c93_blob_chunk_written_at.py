"""Blob chunks carry the UTC day they were written, so a crash's orphans can be swept.

An upload killed mid-stream leaves chunks that no ``tip_attachments`` row names;
the sweep removes them once no upload could still be writing them. The day is
the precision DESIGN allows about a submitter's action (``tip_attachments.added_on``
already holds the same day), so a timestamp finer than the day is never stored;
the sweep compensates by treating a chunk as written at the end of its day.

Chunks written before this revision get the day of the upgrade: they look
young, so the sweep waits for them rather than deleting an upload in flight.

Revision ID: 8d2e4b6a1c93
Revises: b7c41e0d9a52
Create Date: 2026-12-06 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '8d2e4b6a1c93'
down_revision: str | None = 'b7c41e0d9a52'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('blob_chunks', sa.Column('written_on', sa.Date(), nullable=True))
    op.execute('UPDATE blob_chunks SET written_on = CURRENT_DATE')
    with op.batch_alter_table('blob_chunks', schema=None) as batch_op:
        batch_op.alter_column('written_on', existing_type=sa.Date(), nullable=False)
    # The sweep reads ids and days only: answered from this index, never from the chunk rows.
    op.create_index('ix_blob_chunks_blob_id_written_on', 'blob_chunks', ['blob_id', 'written_on'])


def downgrade() -> None:
    op.drop_index('ix_blob_chunks_blob_id_written_on', table_name='blob_chunks')
    with op.batch_alter_table('blob_chunks', schema=None) as batch_op:
        batch_op.drop_column('written_on')
