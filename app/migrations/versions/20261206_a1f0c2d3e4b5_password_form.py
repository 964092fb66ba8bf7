"""Staff accounts record which form of the password their verifier was derived from.

Passwords are derived from their Unicode NFC form, so that "é" typed as one code point on
one device and as "e" plus a combining accent on another is the same password. Verifiers
derived before this revision came from the password as typed: their rows keep NULL, and
login tries the typed string and its normal forms, then re-wraps the same personal key
under the NFC form and records "nfc". No key pair is replaced, so every grant stays valid.

Revision ID: a1f0c2d3e4b5
Revises: 5c2e9d14a7b3
Create Date: 2026-12-06 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'a1f0c2d3e4b5'
down_revision: str | None = '5c2e9d14a7b3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('staff_accounts', sa.Column('password_form', sa.String(length=8), nullable=True))


def downgrade() -> None:
    # Verifiers derived from the NFC form stay valid for members who type NFC (most keyboards);
    # the code before this revision never normalises, so others need the NFC form to log in.
    with op.batch_alter_table('staff_accounts', schema=None) as batch_op:
        batch_op.drop_column('password_form')
