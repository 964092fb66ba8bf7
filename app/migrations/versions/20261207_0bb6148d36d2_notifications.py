"""Content-free notifications: the outbox, deliveries, preferences, channels and clock reminders.

``notification_events`` is the outbox, written in the same transaction as what it announces;
``notification_deliveries`` the notices being sent (one per recipient, channel and batch, with a
lease for the sender that holds it); ``notification_preferences`` each member's choice and sealed
address; ``notification_settings`` the organisation's channels; ``notification_reminders`` the
response-clock reminders already queued, one per report, clock and start of the clock.

New tables only: ``tips`` is not rebuilt (a batch rebuild on SQLite would drop its triggers).

Revision ID: 0bb6148d36d2
Revises: b8d4e2f6a0c1
Create Date: 2026-12-07 05:02:52.899125
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0bb6148d36d2'
down_revision: str | None = 'b8d4e2f6a0c1'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notification_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('audience', sa.String(length=16), nullable=False),
    sa.Column('audience_id', sa.Uuid(), nullable=True),
    sa.Column('excluded_id', sa.Uuid(), nullable=True),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_events'))
    )
    op.create_table('notification_settings',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('email_enabled', sa.Boolean(), nullable=False),
    sa.Column('webhook_url_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('webhook_key_salt', sa.LargeBinary(), nullable=True),
    sa.Column('digest_hours', sa.Integer(), nullable=False),
    sa.Column('changed_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_settings'))
    )
    op.create_table('notification_deliveries',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('recipient_id', sa.Uuid(), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('counts', sa.Text(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=40), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=120), nullable=True),
    sa.Column('parked', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['recipient_id'], ['staff_accounts.id'], name=op.f('fk_notification_deliveries_recipient_id_staff_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_deliveries')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_notification_deliveries_idempotency_key'))
    )
    with op.batch_alter_table('notification_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_notification_deliveries_next_attempt_at', ['next_attempt_at'], unique=False)

    op.create_table('notification_preferences',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('address_encrypted', sa.LargeBinary(), nullable=True),
    sa.Column('openpgp_key', sa.Text(), nullable=True),
    sa.Column('openpgp_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('changed_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['staff_accounts.id'], name=op.f('fk_notification_preferences_account_id_staff_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_notification_preferences'))
    )
    op.create_table('notification_reminders',
    sa.Column('tip_id', sa.Uuid(), nullable=False),
    sa.Column('clock', sa.String(length=16), nullable=False),
    sa.Column('started_on', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['tip_id'], ['tips.id'], name=op.f('fk_notification_reminders_tip_id_tips'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tip_id', 'clock', 'started_on', name=op.f('pk_notification_reminders'))
    )


def downgrade() -> None:
    op.drop_table('notification_reminders')
    op.drop_table('notification_preferences')
    with op.batch_alter_table('notification_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_deliveries_next_attempt_at')

    op.drop_table('notification_deliveries')
    op.drop_table('notification_settings')
    op.drop_table('notification_events')
