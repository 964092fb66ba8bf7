"""Witnesses of the audit log and their cosignatures.

A witness is an outside party (an auditor's or a partner organisation's machine) that keeps
the last checkpoint it verified and cosigns a new one only when it is a consistent extension
(C2SP tlog-witness, tlog-cosignature). The server stores the cosignatures so that proofs it
hands out carry them; every verification checks them again.

Revision ID: 5c2e9d14a7b3
Revises: 3f1c9a7e5b20
Create Date: 2026-12-06 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '5c2e9d14a7b3'
down_revision: str | None = '3f1c9a7e5b20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_witnesses',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('verifier_key', sa.Text(), nullable=False),
        sa.Column('token_hash', sa.LargeBinary(), nullable=False),
        sa.Column('registration_mac', sa.LargeBinary(), nullable=False),
        sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('registered_by', sa.String(length=64), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_witnesses')),
        sa.UniqueConstraint('name', name=op.f('uq_audit_witnesses_name')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_audit_witnesses_token_hash')),
    )
    op.create_table(
        'audit_cosignatures',
        sa.Column('tree_size', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('witness_id', sa.Uuid(), nullable=False),
        sa.Column('signature_line', sa.Text(), nullable=False),
        sa.Column('cosigned_at', sa.BigInteger(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('tree_size', 'witness_id', name=op.f('pk_audit_cosignatures')),
    )


def downgrade() -> None:
    op.drop_table('audit_cosignatures')
    op.drop_table('audit_witnesses')
