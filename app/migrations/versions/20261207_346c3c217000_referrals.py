"""Referrals: the recipients registry and the referrals of cases (app.referrals).

Names, contacts and a referral's selection, redactions and manifest are sealed content (own data
key, sealed to the intake key); a recipient's public key carries a MAC under the key-integrity key.

Revision ID: 346c3c217000
Revises: 4642a343bb0a
Create Date: 2026-12-07 08:23:46.504769
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '346c3c217000'
down_revision: str | None = '4642a343bb0a'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('referral_recipients',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.Enum('authority', 'partner', 'journalist', name='recipient_kind', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('public_key', sa.LargeBinary(), nullable=False),
    sa.Column('public_key_mac', sa.LargeBinary(), nullable=False),
    sa.Column('fingerprint', sa.String(length=80), nullable=False),
    sa.Column('added_by_id', sa.Uuid(), nullable=True),
    sa.Column('added_on', sa.Date(), nullable=False),
    sa.Column('confirmed_by_id', sa.Uuid(), nullable=True),
    sa.Column('confirmed_on', sa.Date(), nullable=True),
    sa.Column('retired_on', sa.Date(), nullable=True),
    sa.Column('row_mac', sa.LargeBinary(), nullable=False),
    sa.Column('intake_key_version', sa.Integer(), nullable=False),
    sa.Column('content_key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('details_encrypted', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['added_by_id'], ['staff_accounts.id'], name=op.f('fk_referral_recipients_added_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['confirmed_by_id'], ['staff_accounts.id'], name=op.f('fk_referral_recipients_confirmed_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['intake_key_version'], ['intake_keys.version'], name=op.f('fk_referral_recipients_intake_key_version_intake_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referral_recipients'))
    )
    op.create_table('referrals',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('status', sa.Enum('proposed', 'approved', 'revoked', name='referral_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('proposed_by_id', sa.Uuid(), nullable=True),
    sa.Column('proposed_on', sa.Date(), nullable=False),
    sa.Column('approved_by_id', sa.Uuid(), nullable=True),
    sa.Column('approved_on', sa.Date(), nullable=True),
    sa.Column('revoked_by_id', sa.Uuid(), nullable=True),
    sa.Column('revoked_on', sa.Date(), nullable=True),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=True),
    sa.Column('approval_seq', sa.BigInteger(), nullable=True),
    sa.Column('bundle_blob_id', sa.Uuid(), nullable=True),
    sa.Column('bundle_sha256', sa.String(length=64), nullable=True),
    sa.Column('bundle_size', sa.BigInteger(), nullable=True),
    sa.Column('intake_key_version', sa.Integer(), nullable=False),
    sa.Column('content_key_version', sa.Integer(), nullable=False),
    sa.Column('sealed_data_key', sa.LargeBinary(), nullable=False),
    sa.Column('spec_encrypted', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['approved_by_id'], ['staff_accounts.id'], name=op.f('fk_referrals_approved_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_referrals_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['intake_key_version'], ['intake_keys.version'], name=op.f('fk_referrals_intake_key_version_intake_keys')),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['staff_accounts.id'], name=op.f('fk_referrals_proposed_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['staff_accounts.id'], name=op.f('fk_referrals_revoked_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_referrals'))
    )
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_referrals_case_id'), ['case_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_referrals_case_id'))

    op.drop_table('referrals')
    op.drop_table('referral_recipients')
