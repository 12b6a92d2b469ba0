"""Store fixtures: every store test runs on SQLite and on the local PostgreSQL (own schema, dropped after)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from roomoperator.store import Store
from roomoperator.store.leases import LeaseBook

POSTGRES_URLS = (
    "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "postgresql+asyncpg://root@127.0.0.1:5432/test",
)


async def postgres_url() -> str | None:
    """The first PostgreSQL URL that answers on 127.0.0.1:5432, or None."""
    for url in POSTGRES_URLS:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
            return url
        except Exception:
            continue
        finally:
            await engine.dispose()
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        opened = Store(f"sqlite:///{tmp_path / 'operator.db'}")
        await opened.migrate()
        yield opened
        await opened.close()
        return
    url = await postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")
    async with postgres_schema(url) as schema:
        opened = Store(url, schema=schema)
        try:
            await opened.migrate()
            yield opened
        finally:
            await opened.close()


@contextlib.asynccontextmanager
async def postgres_schema(url: str) -> AsyncIterator[str]:
    """A fresh schema for one test, dropped afterwards."""
    schema = f"roomop_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.dispose()


async def cut_listener(book: LeaseBook, store: Store) -> None:
    """The server ends `book`'s listening connection (as a restart or a network cut would), and the
    client library has noticed."""
    cut = asyncio.Event()
    book._driver.add_termination_listener(lambda _connection: cut.set())
    async with store.sessions.begin() as session:
        pid = book._driver.get_server_pid()
        await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await asyncio.wait_for(cut.wait(), 5)
