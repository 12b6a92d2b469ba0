"""The revision a room is converging to before any of its runs got past the guardrails (an accepted
spec whose runs so far failed to read or reach the room): `rooms.pending_revision`, so a restart or
another replica keeps running towards it instead of falling back to the older desired spec.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("pending_revision", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("pending_revision")
