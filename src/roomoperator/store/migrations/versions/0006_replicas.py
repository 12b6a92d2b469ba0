"""Operator replicas: the replicas sharing the store (heartbeats) and the lease of each room (its holder,
its fencing epoch, when it expires), compared against the database's clock (`store/leases.py`).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("replica_id", sa.String(128), primary_key=True),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("heartbeat_at", Stamp, nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
    )
    op.create_table(
        "room_leases",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", Stamp, nullable=False),
    )
    op.create_index("ix_room_leases_holder", "room_leases", ["holder"])


def downgrade() -> None:
    op.drop_index("ix_room_leases_holder", table_name="room_leases")
    op.drop_table("room_leases")
    op.drop_table("replicas")
