"""Staff identity: activation links, accounts awaiting activation, lockout, TOTP confirmation, step-up time.

Revision ID: e75477e4f46c
Revises: 82eb3325e295
Create Date: 2026-11-29 13:06:01.919501
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'e75477e4f46c'
down_revision: str | None = '82eb3325e295'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('account_links',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('purpose', sa.Enum('activation', 'password_reset', 'totp_reset', name='purpose', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('created_by_id', sa.Uuid(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_accounts.id'], name=op.f('fk_account_links_account_id_staff_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_accounts.id'], name=op.f('fk_account_links_created_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_links_token_hash'))
    )
    with op.batch_alter_table('account_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_links_account_id'), ['account_id'], unique=False)

    with op.batch_alter_table('staff_accounts', schema=None) as batch_op:
        # Accounts made before this revision enrolled TOTP when they were created.
        batch_op.add_column(sa.Column('totp_confirmed', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
        batch_op.add_column(sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.alter_column('password_salt',
               existing_type=sa.LargeBinary(),
               nullable=True)
        batch_op.alter_column('argon2_time_cost',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.alter_column('argon2_memory_cost_kib',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.alter_column('argon2_parallelism',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.alter_column('login_verifier',
               existing_type=sa.LargeBinary(),
               nullable=True)
        batch_op.alter_column('public_key',
               existing_type=sa.LargeBinary(),
               nullable=True)
        batch_op.alter_column('public_key_mac',
               existing_type=sa.LargeBinary(),
               nullable=True)
        batch_op.alter_column('wrapped_private_key',
               existing_type=sa.LargeBinary(),
               nullable=True)
        batch_op.alter_column('totp_secret_encrypted',
               existing_type=sa.LargeBinary(),
               nullable=True)

    # Open sessions end: their members log in again (and so have typed their password recently).
    op.execute(sa.text("DELETE FROM staff_sessions"))
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reauthenticated_at', sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    # Accounts still waiting for activation have no credentials: they cannot
    # exist under the previous schema's NOT NULL columns.
    op.execute(sa.text("DELETE FROM staff_accounts WHERE login_verifier IS NULL OR public_key IS NULL"))
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_column('reauthenticated_at')

    with op.batch_alter_table('staff_accounts', schema=None) as batch_op:
        batch_op.alter_column('totp_secret_encrypted',
               existing_type=sa.LargeBinary(),
               nullable=False)
        batch_op.alter_column('wrapped_private_key',
               existing_type=sa.LargeBinary(),
               nullable=False)
        batch_op.alter_column('public_key_mac',
               existing_type=sa.LargeBinary(),
               nullable=False)
        batch_op.alter_column('public_key',
               existing_type=sa.LargeBinary(),
               nullable=False)
        batch_op.alter_column('login_verifier',
               existing_type=sa.LargeBinary(),
               nullable=False)
        batch_op.alter_column('argon2_parallelism',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.alter_column('argon2_memory_cost_kib',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.alter_column('argon2_time_cost',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.alter_column('password_salt',
               existing_type=sa.LargeBinary(),
               nullable=False)
        batch_op.drop_column('locked_until')
        batch_op.drop_column('totp_confirmed')

    with op.batch_alter_table('account_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_links_account_id'))

    op.drop_table('account_links')
