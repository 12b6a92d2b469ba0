"""The SQLite database: schema, WAL mode, and one worker thread that runs every transaction.

Why stdlib `sqlite3` on a single dedicated thread (not aiosqlite or SQLAlchemy): every operation is a short,
complete transaction written as one plain function (`repository.py`), run with one thread hop; one writer
thread gives writes a total order for free (consecutive versions, consistent roster) and the room-state read
is two or three indexed queries with no ORM overhead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 2  # PRAGMA user_version; a database written by a newer server is refused, not misread

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    room_id    TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    policies   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    manager    TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entities (
    room_id     TEXT NOT NULL,
    entity_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    declared_at TEXT NOT NULL,
    PRIMARY KEY (room_id, entity_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifact_versions (
    room_id       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    type          TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    workspace     TEXT NOT NULL,
    tags          TEXT NOT NULL,
    fingerprint   TEXT,
    metadata      TEXT,
    parents       TEXT,
    port          TEXT,
    origin_entity TEXT NOT NULL,
    promoted      INTEGER NOT NULL,
    ts            TEXT NOT NULL,
    created_by    TEXT,
    PRIMARY KEY (room_id, owner, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifact_heads (
    room_id    TEXT NOT NULL,
    owner      TEXT NOT NULL,
    name       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    deleted_at TEXT,
    created_by TEXT,
    PRIMARY KEY (room_id, owner, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id TEXT NOT NULL,
    ts      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_room ON events (room_id, seq);
"""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (  # who wrote each artifact version and who manages a room (NULL for what was stored before)
        "ALTER TABLE rooms ADD COLUMN manager TEXT",
        "ALTER TABLE artifact_versions ADD COLUMN created_by TEXT",
        "ALTER TABLE artifact_heads ADD COLUMN created_by TEXT",
    ),
}
"""The statements that bring a database of the previous version to each version (`SCHEMA` has them all)."""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Database:
    """One SQLite file (`<data>/roomserver.db`) served by one worker thread."""

    def __init__(self, path: Path):
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roomserver-db")
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise RuntimeError(
                f"{self.path}: schema version {version} is newer than this server's {SCHEMA_VERSION}"
            )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged write survives power loss, not only kill -9
        with transaction(conn):
            for step in range(version + 1, SCHEMA_VERSION + 1) if version else ():
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn = conn

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._connect)

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def run(
        self, operation: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `operation(conn, *args, **kwargs)` on the database thread."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("database is not open")
        call = functools.partial(operation, conn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)
