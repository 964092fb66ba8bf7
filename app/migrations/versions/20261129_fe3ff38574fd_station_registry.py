"""Station registry: stations, sources, status history, case links.

Revision ID: fe3ff38574fd
Revises: 25d7de9af1ce
Create Date: 2026-11-29 16:02:52.215569
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'fe3ff38574fd'
down_revision: str | None = '25d7de9af1ce'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('city', sa.String(length=100), nullable=False),
    sa.Column('city_key', sa.String(length=100), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('operating_bureau', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Enum('reported', 'confirmed', 'ordered_closed', 'reported_closed', 'under_investigation', 'prosecuted', name='station_status', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('first_reported', sa.Date(), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=False),
    sa.Column('longitude', sa.Float(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stations')),
    sa.UniqueConstraint('country', 'city_key', 'operating_bureau', name=op.f('uq_stations_country'))
    )
    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stations_country'), ['country'], unique=False)
        batch_op.create_index(batch_op.f('ix_stations_operating_bureau'), ['operating_bureau'], unique=False)
        batch_op.create_index(batch_op.f('ix_stations_status'), ['status'], unique=False)

    op.create_table('station_sources',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('station_id', sa.Uuid(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=500), nullable=False),
    sa.Column('publisher', sa.String(length=200), nullable=True),
    sa.Column('published_on', sa.Date(), nullable=True),
    sa.Column('url', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_station_sources_station_id_stations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_station_sources'))
    )
    with op.batch_alter_table('station_sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_station_sources_station_id'), ['station_id'], unique=False)

    op.create_table('station_status_changes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('station_id', sa.Uuid(), nullable=False),
    sa.Column('from_status', sa.String(length=32), nullable=True),
    sa.Column('to_status', sa.String(length=32), nullable=False),
    sa.Column('actor_id', sa.Uuid(), nullable=True),
    sa.Column('changed_on', sa.Date(), nullable=False),
    sa.Column('source', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['staff_accounts.id'], name=op.f('fk_station_status_changes_actor_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_station_status_changes_station_id_stations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_station_status_changes'))
    )
    with op.batch_alter_table('station_status_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_station_status_changes_station_id'), ['station_id'], unique=False)

    op.create_table('case_station_links',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('case_id', sa.Uuid(), nullable=False),
    sa.Column('station_id', sa.Uuid(), nullable=False),
    sa.Column('relation', sa.Enum('contacted_via', 'operated_by', 'suspected', name='link_relation', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('confidence', sa.Enum('low', 'medium', 'high', name='link_confidence', native_enum=False, create_constraint=True, length=32), nullable=False),
    sa.Column('evidence_encrypted', sa.LargeBinary(), nullable=False),
    sa.Column('proposed_by_id', sa.Uuid(), nullable=True),
    sa.Column('proposed_on', sa.Date(), nullable=False),
    sa.Column('confirmed_by_id', sa.Uuid(), nullable=True),
    sa.Column('confirmed_on', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_station_links_case_id_cases'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['confirmed_by_id'], ['staff_accounts.id'], name=op.f('fk_case_station_links_confirmed_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['staff_accounts.id'], name=op.f('fk_case_station_links_proposed_by_id_staff_accounts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['station_id'], ['stations.id'], name=op.f('fk_case_station_links_station_id_stations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_station_links')),
    sa.UniqueConstraint('case_id', 'station_id', 'relation', name=op.f('uq_case_station_links_case_id'))
    )
    with op.batch_alter_table('case_station_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_station_links_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_station_links_station_id'), ['station_id'], unique=False)



def downgrade() -> None:

    with op.batch_alter_table('case_station_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_station_links_station_id'))
        batch_op.drop_index(batch_op.f('ix_case_station_links_case_id'))

    op.drop_table('case_station_links')
    with op.batch_alter_table('station_status_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_station_status_changes_station_id'))

    op.drop_table('station_status_changes')
    with op.batch_alter_table('station_sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_station_sources_station_id'))

    op.drop_table('station_sources')
    with op.batch_alter_table('stations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stations_status'))
        batch_op.drop_index(batch_op.f('ix_stations_operating_bureau'))
        batch_op.drop_index(batch_op.f('ix_stations_country'))

    op.drop_table('stations')
