"""jobs.handed_back: attempts that ended in a graceful shutdown, which KGAN_MAX_ATTEMPTS does not count

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 03:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Jobs already in the table have handed nothing back that anyone counted: 0.
    op.add_column('jobs', sa.Column('handed_back', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('jobs') as batch:  # SQLite rebuilds the table to drop a column
        batch.drop_column('handed_back')
