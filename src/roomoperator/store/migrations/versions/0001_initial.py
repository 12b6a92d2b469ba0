"""Initial schema: rooms, spec versions, runs, audit.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("room_id", sa.String(64), primary_key=True),
        sa.Column("managed", sa.Boolean(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("spec_version", sa.Integer(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("base_dir", sa.Text(), nullable=True),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("cycles_since_converged", sa.Integer(), nullable=False),
        sa.Column("last_reconcile", Stamp, nullable=True),
        sa.Column("last_result", sa.JSON(), nullable=True),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_table(
        "spec_versions",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("room_id", sa.String(64), nullable=False, index=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=True),
        sa.Column("applied_at", Stamp, nullable=False),
        sa.UniqueConstraint("room_id", "revision"),
    )
    op.create_table(
        "runs",
        sa.Column("correlation_id", sa.String(64), primary_key=True),
        sa.Column("room_id", sa.String(64), nullable=False, index=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("confirm", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("base_dir", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("superseded_by", sa.String(64), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("finished_at", Stamp, nullable=True),
    )
    op.create_table(
        "audit",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("action", sa.String(100), nullable=False, index=True),
        sa.Column("correlation_id", sa.String(64), nullable=False, index=True),
        sa.Column("timestamp", Stamp, nullable=False, index=True),
        sa.Column("operator_version", sa.String(50), nullable=False),
        sa.Column("spec_version", sa.Integer(), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
    )
    op.create_index("ix_audit_room_id_id", "audit", ["room_id", "id"])


def downgrade() -> None:
    op.drop_table("audit")
    op.drop_table("runs")
    op.drop_table("spec_versions")
    op.drop_table("rooms")
