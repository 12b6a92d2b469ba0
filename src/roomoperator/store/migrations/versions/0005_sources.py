"""GitOps sources and notifications: each source's fetched, attempted and applied revisions and its
errors; the source that owns a room; the source (and its revision, a commit) each spec revision came
from; the notifications' outbox and the log of their delivery attempts.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)
AutoId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("fetched_revision", sa.String(64), nullable=True),
        sa.Column("fetched_at", Stamp, nullable=True),
        sa.Column("attempted_revision", sa.String(64), nullable=True),
        sa.Column("applied_revision", sa.String(64), nullable=True),
        sa.Column("applied_at", Stamp, nullable=True),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("rooms", sa.JSON(), nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("room_id", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("next_attempt_at", Stamp, nullable=False),
        sa.Column("delivered_at", Stamp, nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "deliveries",
        sa.Column("id", AutoId, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.String(36), nullable=False, index=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("at", Stamp, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("source", sa.String(64), nullable=True))
    with op.batch_alter_table("spec_versions") as batch:
        batch.add_column(sa.Column("source", sa.String(64), nullable=True))
        batch.add_column(sa.Column("source_revision", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spec_versions") as batch:
        batch.drop_column("source_revision")
        batch.drop_column("source")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("source")
    op.drop_table("deliveries")
    op.drop_index("ix_outbox_status_next", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("sources")
