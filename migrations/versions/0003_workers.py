"""workers: each worker process's device and memory, refreshed by its heartbeat, for admission

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 13:00:00

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'workers',
        sa.Column('id', sa.String(length=255), nullable=False),
        sa.Column('device', sa.String(length=64), nullable=False),
        sa.Column('device_name', sa.String(length=200), nullable=True),
        sa.Column('memory_bytes', sa.BigInteger(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_workers_seen_at'), 'workers', ['seen_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_workers_seen_at'), table_name='workers')
    op.drop_table('workers')
