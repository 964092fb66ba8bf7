"""Duress codes and the duress flag on tips (app.intake.duress).

``duress_codes`` holds no date and no tip id, and has no rowid on SQLite, so that nothing in it
links a code to its report; ``tip_duress_flags`` is written only when the organisation asked to
be told that a duress code was used.

Revision ID: 4642a343bb0a
Revises: 0bb6148d36d2
Create Date: 2026-12-07 07:55:16.330700
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '4642a343bb0a'
down_revision: str | None = '0bb6148d36d2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('duress_codes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('lookup_hash', sa.LargeBinary(), nullable=False),
    sa.Column('sealed_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_duress_codes')),
    sa.UniqueConstraint('lookup_hash', name=op.f('uq_duress_codes_lookup_hash')),
    sqlite_with_rowid=False
    )
    op.create_table('tip_duress_flags',
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('flagged_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_duress_flags_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tip_id', name=op.f('pk_tip_duress_flags'))
    )


def downgrade() -> None:
    op.drop_table('tip_duress_flags')
    op.drop_table('duress_codes')
