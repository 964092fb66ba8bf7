"""Foundation schema: intake keys and grants, staff accounts and sessions, tips, their attachments and messages.

Revision ID: 82eb3325e295
Revises:
Create Date: 2026-11-29 12:35:53.667930
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '82eb3325e295'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('intake_keys',
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('public_key_mac', sa.LargeBinary(), nullable=False),
    sa.Column('recovery_public_key', sa.LargeBinary(), nullable=False),
    sa.Column('recovery_wrapped_private_key', sa.LargeBinary(), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('version', name=op.f('pk_intake_keys'))
    )
    op.create_table('staff_accounts',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('role', sa.Enum('caseworker', 'lead', 'admin', 'auditor', name='role', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('password_salt', sa.LargeBinary(), nullable=False),
    sa.Column('argon2_time_cost', sa.Integer(), nullable=False),
    sa.Column('argon2_memory_cost_kib', sa.Integer(), nullable=False),
    sa.Column('argon2_parallelism', sa.Integer(), nullable=False),
    sa.Column('login_verifier', sa.LargeBinary(), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('public_key_mac', sa.LargeBinary(), nullable=False),
    sa.Column('wrapped_private_key', sa.LargeBinary(), nullable=False),
    sa.Column('totp_secret_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('totp_last_step', sa.Integer(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('created_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_accounts')),
    sa.UniqueConstraint('username', name=op.f('uq_staff_accounts_username'))
    )
    op.create_table('intake_key_grants',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_private_key', sa.LargeBinary(), nullable=False),
    sa.Column('granted_by_id', sa.Uuid(), nullable=True),
    sa.Column('granted_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_accounts.id'], name=op.f('fk_intake_key_grants_account_id_staff_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['granted_by_id'], ['staff_accounts.id'], name=op.f('fk_intake_key_grants_granted_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['key_version'], ['intake_keys.version'], name=op.f('fk_intake_key_grants_key_version_intake_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_key_grants')),
    sa.UniqueConstraint('account_id', 'key_version', name=op.f('uq_intake_key_grants_account_id'))
    )
    with op.batch_alter_table('intake_key_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_intake_key_grants_account_id'), ['account_id'], unique=False)

    op.create_table('staff_sessions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.LargeBinary(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('unlocked_keys_encrypted', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_accounts.id'], name=op.f('fk_staff_sessions_account_id_staff_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_sessions')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_staff_sessions_token_hash'))
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_account_id'), ['account_id'], unique=False)

    op.create_table('tips',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('ref', sa.String(length=16), nullable=False),
    sa.Column('status', sa.Enum('new', 'in_review', 'needs_info', 'verified', 'rejected', name='status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('urgent', sa.Boolean(), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=False),
    sa.Column('last_activity_on', sa.Date(), nullable=False),
    sa.Column('intake_key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('narrative_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('answers_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('receipt_lookup_hash', sa.LargeBinary(), nullable=False),
    sa.Column('receipt_public_key', sa.LargeBinary(), nullable=False),
    sa.Column('receipt_public_key_mac', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['intake_key_version'], ['intake_keys.version'], name=op.f('fk_tips_intake_key_version_intake_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tips')),
    sa.UniqueConstraint('receipt_lookup_hash', name=op.f('uq_tips_receipt_lookup_hash')),
    sa.UniqueConstraint('ref', name=op.f('uq_tips_ref'))
    )
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tips_status'), ['status'], unique=False)

    op.create_table('tip_attachments',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('details_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('added_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_attachments_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_attachments'))
    )
    with op.batch_alter_table('tip_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_attachments_tip_id'), ['tip_id'], unique=False)

    op.create_table('tip_messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('author', sa.Enum('submitter', 'staff', name='author', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('author_account_id', sa.Uuid(), nullable=True),
    sa.Column('sent_on', sa.Date(), nullable=False),
    sa.Column('intake_key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('body_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('body_for_submitter', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['author_account_id'], ['staff_accounts.id'], name=op.f('fk_tip_messages_author_account_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['intake_key_version'], ['intake_keys.version'], name=op.f('fk_tip_messages_intake_key_version_intake_keys')),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_tip_messages_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tip_messages'))
    )
    with op.batch_alter_table('tip_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tip_messages_tip_id'), ['tip_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tip_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_messages_tip_id'))

    op.drop_table('tip_messages')
    with op.batch_alter_table('tip_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tip_attachments_tip_id'))

    op.drop_table('tip_attachments')
    with op.batch_alter_table('tips', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tips_status'))

    op.drop_table('tips')
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_account_id'))

    op.drop_table('staff_sessions')
    with op.batch_alter_table('intake_key_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_intake_key_grants_account_id'))

    op.drop_table('intake_key_grants')
    op.drop_table('staff_accounts')
    op.drop_table('intake_keys')
