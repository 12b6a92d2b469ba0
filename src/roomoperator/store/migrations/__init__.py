"""Alembic migrations of the store (run by `Store.migrate()`; `script_location` is this folder)."""
