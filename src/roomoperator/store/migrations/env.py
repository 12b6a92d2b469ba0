"""Alembic environment: migrations run on the connection `Store.migrate()` passes in."""

from __future__ import annotations

from alembic import context

from roomoperator.store.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table_schema=context.config.attributes.get("schema"),
)
with context.begin_transaction():
    context.run_migrations()
