"""Revisions: every accepted spec is a numbered revision (content digest, seed digests, seed folder,
restore origin); the room counts its latest revision apart from its desired one; runs name their revision.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("rooms") as batch:
        batch.add_column(sa.Column("latest_revision", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE rooms SET latest_revision = revision")
    with op.batch_alter_table("spec_versions") as batch:
        batch.add_column(sa.Column("digest", sa.String(64), nullable=True))
        batch.add_column(sa.Column("seeds", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("base_dir", sa.Text(), nullable=True))
        batch.add_column(sa.Column("confirmed", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("restored_from", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("desired_at", Stamp, nullable=True))
    # Before revisions were numbered at acceptance, only specs that became desired were recorded.
    op.execute("UPDATE spec_versions SET desired_at = applied_at")
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("superseded_by_revision", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("superseded_by_revision")
        batch.drop_column("revision")
    with op.batch_alter_table("spec_versions") as batch:
        for column in ("desired_at", "restored_from", "confirmed", "base_dir", "seeds", "digest"):
            batch.drop_column(column)
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("latest_revision")
