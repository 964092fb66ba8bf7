"""Passkeys (WebAuthn) as a staff second factor; a lead's confirmation of a member's key pair.

``staff_passkeys`` holds each member's enrolled WebAuthn credentials (public material only, with
a row MAC). ``staff_accounts.confirmed_at``/``confirmed_by_id`` record that a lead compared the
fingerprint of the key pair made through the member's last activation or password-reset link
with the member. Accounts that exist at this revision were set up before the rule and are
recorded as confirmed at the upgrade, by nobody.

Revision ID: e4f1a2b3c5d6
Revises: c7d2e8f1a9b4
Create Date: 2026-12-06 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e4f1a2b3c5d6'
down_revision: str | None = 'c7d2e8f1a9b4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'staff_passkeys',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('account_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('credential_id', sa.LargeBinary(), nullable=False),
        sa.Column('public_key', sa.LargeBinary(), nullable=False),
        sa.Column('sign_count', sa.BigInteger(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('clone_suspected_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('row_mac', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ['account_id'], ['staff_accounts.id'], name=op.f('fk_staff_passkeys_account_id_staff_accounts'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_passkeys')),
        sa.UniqueConstraint('credential_id', name=op.f('uq_staff_passkeys_credential_id')),
    )
    op.create_index(op.f('ix_staff_passkeys_account_id'), 'staff_passkeys', ['account_id'], unique=False)
    with op.batch_alter_table('staff_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('confirmed_by_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f('fk_staff_accounts_confirmed_by_id_staff_accounts'),
            'staff_accounts', ['confirmed_by_id'], ['id'], ondelete='SET NULL',
        )
    op.execute(sa.text("UPDATE staff_accounts SET confirmed_at = CURRENT_TIMESTAMP"))


def downgrade() -> None:
    with op.batch_alter_table('staff_accounts', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_staff_accounts_confirmed_by_id_staff_accounts'), type_='foreignkey')
        batch_op.drop_column('confirmed_by_id')
        batch_op.drop_column('confirmed_at')
    op.drop_index(op.f('ix_staff_passkeys_account_id'), table_name='staff_passkeys')
    op.drop_table('staff_passkeys')
