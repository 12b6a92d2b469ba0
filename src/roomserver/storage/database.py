"""The SQLite database: schema, WAL mode, the commit queue every write goes through, and reader threads.

Why stdlib `sqlite3` on dedicated threads (not aiosqlite or SQLAlchemy): every operation is a short,
complete function of a connection (`repository.py`), run with one thread hop, and the room-state read is a
few indexed queries with no ORM overhead.

**Group commit.** A write (`run` of any function not marked `read_only`) joins the commit queue. One
writer thread takes every write queued, runs each in its own SAVEPOINT inside one `BEGIN IMMEDIATE`
transaction (a failing write rolls back its own savepoint only, and its caller gets its exception),
commits once (one fsync: `synchronous=FULL`), and only then answers the group's callers: nothing is
acknowledged before it is durable, and N concurrent writes share one fsync instead of paying N. The one
writer also gives writes a total order for free (consecutive versions, a consistent roster). Groups form
by themselves: what arrives while the writer commits one group makes the next (at most `max_group`).

**Reads** (functions marked `read_only`) run on `readers` reader connections of their own
(`query_only`), so they never wait behind the queue: in WAL mode they read the last commit while the
writer works, and a write acknowledged to a caller is visible to its next read.

**After each commit** `on_commit` is called on the event loop, before any caller of the group resumes,
with the rooms whose events the group appended (room id -> its last event's sequence): every change of
room data appends an event, so this is how the server learns that a room changed (`server.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from roomserver.storage import actors, fencing

P = ParamSpec("P")
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

SCHEMA_VERSION = 4  # PRAGMA user_version; a database written by a newer server is refused, not misread

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
    data    TEXT NOT NULL,
    actor   TEXT
);
CREATE INDEX IF NOT EXISTS events_by_room ON events (room_id, seq);
CREATE TABLE IF NOT EXISTS fences (
    room_id TEXT PRIMARY KEY,
    epoch   INTEGER NOT NULL
) WITHOUT ROWID;
"""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (  # who wrote each artifact version and who manages a room (NULL for what was stored before)
        "ALTER TABLE rooms ADD COLUMN manager TEXT",
        "ALTER TABLE artifact_versions ADD COLUMN created_by TEXT",
        "ALTER TABLE artifact_heads ADD COLUMN created_by TEXT",
    ),
    3: (),  # the `fences` table (operator replicas' lease epochs, `fencing.py`): created by `SCHEMA`
    4: ("ALTER TABLE events ADD COLUMN actor TEXT",),  # who made each event (`actors.py`; NULL before)
}
"""The statements that bring a database of the previous version to each version (`SCHEMA` has them all)."""

_READ_ONLY: Final = "_roomserver_read_only"
_CHANGED_ROOMS: Final = "SELECT room_id, MAX(seq) FROM events WHERE seq > ? GROUP BY room_id"

CommitHook = Callable[[dict[str, int]], None]


def read_only(function: F) -> F:
    """Mark a repository function that only reads: `Database.run` serves it from a reader connection."""
    setattr(function, _READ_ONLY, True)
    return function


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One atomic change: a SAVEPOINT inside the transaction in progress (the commit queue's, or a batch's),
    else BEGIN IMMEDIATE ... COMMIT; rolled back on any exception."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT change")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK TO change")
            conn.execute("RELEASE change")
            raise
        conn.execute("RELEASE change")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass
class _Write:
    """A queued write: the call, its caller's future, and (once run) its result or error."""

    call: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None


def _settle(write: _Write) -> None:
    if write.future.done():
        return  # the caller stopped waiting (the write happened all the same)
    if write.error is not None:
        write.future.set_exception(write.error)
    else:
        write.future.set_result(write.result)


class Database:
    """One SQLite file (`<data>/roomserver.db`): one writer thread behind the commit queue, reader threads."""

    def __init__(
        self, path: Path, *, readers: int = 2, max_group: int = 512, on_commit: CommitHook | None = None
    ):
        self.path = path
        self.max_group = max_group
        self.on_commit = on_commit
        self.commits = 0
        """Transactions committed by the writer since open (each one fsync): the group commit's measure."""
        self._reader_count = readers
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen = 0  # the last event sequence reported to `on_commit`

    def _connect(self) -> sqlite3.Connection:
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
        self._seen = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
        return conn

    def _open_reader(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")  # a function wrongly marked read_only fails instead of writing
        self._local.conn = conn
        self._reader_conns.append(conn)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._conn = await asyncio.to_thread(self._connect)
        self._writer = threading.Thread(target=self._write_loop, name="roomserver-db-writer", daemon=True)
        self._writer.start()
        self._readers = ThreadPoolExecutor(
            max_workers=self._reader_count,
            thread_name_prefix="roomserver-db-reader",
            initializer=self._open_reader,
        )

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)  # after every write queued before it
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        for conn in [*self._reader_conns, *([self._conn] if self._conn else [])]:
            conn.close()
        self._reader_conns.clear()
        self._conn = None

    async def run(
        self, operation: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `operation(conn, *args, **kwargs)`: on a reader connection when it is `read_only`, else
        through the commit queue (answered once its group is durable), fenced when the request is
        (`fencing.py`), its events kept with the caller's actor (`actors.py`)."""
        if self._conn is None or self._loop is None or self._readers is None:
            raise RuntimeError("database is not open")
        if getattr(operation, _READ_ONLY, False):
            read = functools.partial(self._read, operation, *args, **kwargs)
            return await self._loop.run_in_executor(self._readers, read)
        future: asyncio.Future[T] = self._loop.create_future()
        fence, actor = fencing.current(), actors.current()

        def write(conn: sqlite3.Connection) -> T:
            if fence is not None:  # checked and recorded in the write's own savepoint
                fencing.check(conn, fence)
            with actors.acting(actor):  # on the writer thread: the events the write appends are by it
                return operation(conn, *args, **kwargs)

        self._queue.put(_Write(write, future))
        return await future

    def _read(self, operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return operation(self._local.conn, *args, **kwargs)

    # --- the writer thread ---------------------------------------------------------------------------------

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < self.max_group:
                try:
                    queued = self._queue.get_nowait()
                except queue.Empty:
                    break
                if queued is None:
                    stopping = True
                    break
                group.append(queued)
            try:
                changed = self._commit(group)
            except Exception as exc:  # (the report after the commit failed): no caller is left waiting
                changed = {}
                self._fail([w for w in group if w.error is None], exc)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._answer, group, changed)

    def _commit(self, group: list[_Write]) -> dict[str, int]:
        """Run the group in one transaction and commit it; the rooms whose events it appended."""
        conn = self._conn
        assert conn is not None
        pending: list[_Write] = []  # applied in the open transaction, not yet committed
        try:
            for write in group:
                if not conn.in_transaction:
                    conn.execute("BEGIN IMMEDIATE")
                conn.execute("SAVEPOINT write")
                try:
                    write.result = write.call(conn)
                except Exception as exc:  # the caller gets it; the others go on
                    write.error = exc
                    if conn.in_transaction:
                        conn.execute("ROLLBACK TO write")
                        conn.execute("RELEASE write")
                    else:  # SQLite ended the whole transaction (disk full, I/O error): the others are lost
                        self._fail(pending, exc)
                        pending = []
                    continue
                conn.execute("RELEASE write")
                pending.append(write)
            if conn.in_transaction:
                conn.execute("COMMIT")
                self.commits += 1
        except Exception as exc:  # the commit failed: nothing of the group is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._fail([w for w in group if w.error is None], exc)
            return {}
        return self._changed(conn) if pending else {}

    @staticmethod
    def _fail(writes: list[_Write], exc: Exception) -> None:
        for write in writes:
            write.result, write.error = None, RuntimeError(f"the write's transaction failed: {exc}")

    def _changed(self, conn: sqlite3.Connection) -> dict[str, int]:
        rooms = dict(conn.execute(_CHANGED_ROOMS, (self._seen,)).fetchall())
        if rooms:
            self._seen = max(rooms.values())
        return rooms

    def _answer(self, group: list[_Write], changed: dict[str, int]) -> None:
        """On the event loop: report the changed rooms, then answer every caller of the group."""
        try:
            if changed and self.on_commit is not None:
                self.on_commit(changed)
        finally:
            for write in group:
                _settle(write)
