"""Row MACs for what a database writer could otherwise forge, and member key epochs.

- ``tip_messages.row_mac``, ``tip_attachments.row_mac`` (follow-up files),
  ``staff_sessions.row_mac``, ``intake_key_grants.row_mac`` (with the member's
  revocation epoch): an HMAC under the key-integrity key (never in the database)
  over what the row is and who wrote it (app.intake.integrity, app.auth.sessions).
(Member key epochs need no column: the epoch is the sequence number of the newest
``account.key_pair_set`` audit event, read from the log; app.custody.service.)

The migration holds no secret, so it cannot compute MACs. Existing messages and grants are given
theirs once, by the first `daylight serve` after the upgrade (app.entrypoints.integrity_backfill,
recorded as an audit event so that it never runs again); existing sessions are refused
(members log in again); files added at follow-up before this revision stay unopenable
until re-sent. A downgrade below this revision drops the MACs: after upgrading again,
messages stay hidden (the backfill ran once), so do not downgrade past it with live data.

Revision ID: c7d2e8f1a9b4
Revises: a1f0c2d3e4b5
Create Date: 2026-12-06 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c7d2e8f1a9b4'
down_revision: str | None = 'a1f0c2d3e4b5'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('tip_messages', sa.Column('row_mac', sa.LargeBinary(), nullable=True))
    op.add_column('tip_attachments', sa.Column('row_mac', sa.LargeBinary(), nullable=True))
    op.add_column('staff_sessions', sa.Column('row_mac', sa.LargeBinary(), nullable=True))
    op.add_column('intake_key_grants', sa.Column('row_mac', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    for table, column in (
        ('intake_key_grants', 'row_mac'),
        ('staff_sessions', 'row_mac'),
        ('tip_attachments', 'row_mac'),
        ('tip_messages', 'row_mac'),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
