"""The store's repository: every read and write the operator makes, each in a short transaction of its
own, or, for the frequent ones, in a group commit shared with other rooms' (`store/committing.py`):
accepted revisions (a compare-and-set of each room's latest revision, `store/accepting.py`), the audit
journal with the intents of writes (`_journal`), and the runs' bookkeeping (`store/batching.py`).

SQLite (`sqlite:///path`, the default `.roomop/operator.db`) and PostgreSQL (`postgresql://...`) are
both reached through SQLAlchemy's async engine; `migrate()` brings the schema to the latest alembic
revision. An optional PostgreSQL `schema` isolates one operator (or one test run) from another.

With operator replicas (`fencing` set, `store/leases.py`) every write of a room's run checks this
replica's lease of the room, with the epoch the write carries (`writes_of`), in the same transaction
(the run rows' updates, the status, the desired revision, the intents of its writes): `refused` for a
group commit, `check_lease` for a lone write. Acceptance is not fenced (any replica accepts).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Collection, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, delete, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from roomoperator.model.audit import AuditEntry, Intent, utcnow
from roomoperator.store.accepting import Acceptance, accept_all
from roomoperator.store.committing import GroupCommit
from roomoperator.store.errors import FencedError, StoreError
from roomoperator.store.leases import Fencing, Write, check_lease, refusals
from roomoperator.store.records import RoomRecord, RunRecord, RunStatus, SpecVersion, column_values
from roomoperator.store.tables import (
    AUDIT,
    INTENTS,
    RUNS,
    AuditRow,
    IntentRow,
    RoomRow,
    RunRow,
    SpecVersionRow,
)

MIGRATIONS = Path(__file__).parent / "migrations"
R = TypeVar("R")
MIGRATION_LOCK = 0x526F6F6D4F70  # "RoomOp": the advisory lock key of `Store.migrate` on PostgreSQL
__all__ = ["FencedError", "Store", "StoreError", "normalise_url"]


def normalise_url(url: str) -> str:
    """Give plain `sqlite:` / `postgresql:` URLs their async driver (`aiosqlite`, `asyncpg`)."""
    parsed = make_url(url)
    driver = {
        "sqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
    }
    backend = driver.get(parsed.drivername)
    return parsed.set(drivername=backend).render_as_string(hide_password=False) if backend else url


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def _record(cls: type[R], row: Any) -> R:
    """The record `cls` with the same-named attributes of an ORM row (times made UTC-aware)."""
    values = {field.name: getattr(row, field.name) for field in fields(cls)}  # type: ignore[arg-type]
    return cls(**{name: _aware(v) if isinstance(v, dt.datetime) else v for name, v in values.items()})


record_of, aware = _record, _aware
"""`_record` and `_aware` for the store's other modules (`store/sources.py`, `store/outbox.py`)."""


def _audit_row(entry: AuditEntry) -> dict[str, Any]:
    """The `audit` table's columns of `entry` (its `metadata` column is the ORM's `metadata_`)."""
    return entry.model_dump()


def _entry(row: AuditRow) -> AuditEntry:
    values = {name: getattr(row, name) for name in AuditEntry.model_fields if name != "metadata"}
    return AuditEntry(**values | {"timestamp": _aware(row.timestamp)}, metadata=dict(row.metadata_ or {}))


@dataclass(frozen=True)
class _Journaled:
    """One item of the journal's group commit: audit entries, intents to record, intents to drop."""

    entries: tuple[AuditEntry, ...] = ()
    intents: tuple[Intent, ...] = ()
    settles: tuple[str, ...] = ()
    fenced: tuple[Write, ...] = ()
    """Replica mode: the rooms of `intents` and the epoch their writes carry (checked at the commit)."""


def _sqlite_pragmas(connection: Any, record: Any) -> None:
    """WAL with `synchronous=NORMAL`: a commit survives a crash or `kill -9` of the process (only a power
    loss can drop the last commits), at a fraction of the cost of an fsync per commit."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """Desired specs with history, runs with results, the audit log and room status: all durable."""

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = normalise_url(url)
        self.schema = schema
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        connect_args: dict[str, Any] = {}
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if schema is not None:
            connect_args["server_settings"] = {"search_path": schema}
        self.connect_args = connect_args
        """What each connection is opened with (the schema's search path); `store/leases.py` reuses it."""
        self.engine: AsyncEngine = create_async_engine(self.url, connect_args=connect_args)
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite allows one writer: serialise writes here instead of failing with "database is locked".
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        self._journal: GroupCommit[_Journaled, None] = GroupCommit(self._commit_journal)
        self._accepts: GroupCommit[Acceptance, bool] = GroupCommit(
            self._commit_accepts, key=lambda acceptance: acceptance.version.room_id
        )
        self.fencing: Fencing | None = None
        """Set in replica mode (`service/replicas.py`): every room write then checks this replica's lease."""

    async def migrate(self, *, revision: str = "head") -> None:
        """Create or upgrade the schema to `revision` (the latest migration by default). On PostgreSQL the
        migration holds a transaction-scoped advisory lock, so replicas starting together migrate one
        after the other (the later ones find the schema at `revision`)."""

        def upgrade(connection: Connection) -> None:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            config.attributes["schema"] = self.schema
            command.upgrade(config, revision)

        try:
            async with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                await connection.run_sync(upgrade)
        except (OSError, SQLAlchemyError) as exc:
            raise StoreError(f"cannot open the store at {self.engine.url!r}: {exc}") from exc

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            async with self.engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
        except (OSError, SQLAlchemyError):
            return False
        return True

    async def _write(self, rows: Sequence[Any] = (), *statements: Any) -> None:
        async with self._writing(), self._sessions.begin() as session:
            session.add_all(rows)
            for statement in statements:
                await session.execute(statement)

    def _writing(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._write_lock or contextlib.nullcontext()

    def writing(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held around a write transaction by the store's other modules (`store/sources.py`)."""
        return self._writing()

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for the store's other modules (`store/sources.py`)."""
        return self._sessions

    # Rooms -------------------------------------------------------------------------------------------

    async def get_room(self, room_id: str) -> RoomRecord | None:
        async with self._sessions() as session:
            row = await session.get(RoomRow, room_id)
            return _record(RoomRecord, row) if row else None

    async def list_rooms(
        self, *, managed_only: bool = False, room_ids: Collection[str] | None = None
    ) -> list[RoomRecord]:
        """Every room (of `room_ids` only, when given), in room-id order."""
        query = select(RoomRow).order_by(RoomRow.room_id)
        if managed_only:
            query = query.where(RoomRow.managed.is_(True))
        if room_ids is not None:
            query = query.where(RoomRow.room_id.in_(sorted(room_ids)))
        async with self._sessions() as session:
            return [_record(RoomRecord, row) for row in (await session.scalars(query)).all()]

    async def accept_revision(self, version: SpecVersion, *, run: RunRecord | None = None) -> bool:
        """Record `version` as the room's next revision, with `run` (the run that will apply it), in one
        transaction, when the room's latest revision is still `version.revision - 1` (compare-and-set);
        False when another writer accepted a revision of the room first (nothing is written). Concurrent
        acceptances of different rooms share one transaction (`store/accepting.py`)."""
        return await self._accepts.submit(Acceptance(version, run))

    async def _commit_accepts(self, acceptances: Sequence[Acceptance]) -> list[bool]:
        try:
            async with self._writing(), self._sessions.begin() as session:
                connection = await session.connection()
                return await accept_all(connection, acceptances, lock=self.dialect != "sqlite")
        except IntegrityError:  # a concurrent writer inserted a room or a revision first
            if len(acceptances) == 1:
                return [False]
            return [accepted for one in acceptances for accepted in await self._commit_accepts([one])]

    async def revision(self, room_id: str, revision: int) -> SpecVersion | None:
        """One revision of a room."""
        query = select(SpecVersionRow).where(
            SpecVersionRow.room_id == room_id, SpecVersionRow.revision == revision
        )
        async with self._sessions() as session:
            row = await session.scalar(query)
            return _record(SpecVersion, row) if row else None

    async def latest_revisions(self, *, room_ids: Collection[str] | None = None) -> dict[str, SpecVersion]:
        """Every room's latest revision (of `room_ids` only, when given), by room id (one query)."""
        query = select(SpecVersionRow).join(
            RoomRow,
            (RoomRow.room_id == SpecVersionRow.room_id)
            & (RoomRow.latest_revision == SpecVersionRow.revision),
        )
        if room_ids is not None:
            query = query.where(RoomRow.room_id.in_(sorted(room_ids)))
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return {row.room_id: _record(SpecVersion, row) for row in rows}

    async def unmanage(self, room_id: str) -> bool:
        """Stop managing a room (its history, runs and audit stay); False when it was not managed."""
        async with self._writing(), self._sessions.begin() as session:
            result = await session.execute(
                update(RoomRow)
                .where(
                    RoomRow.room_id == room_id,
                    RoomRow.managed.is_(True) | RoomRow.pending_revision.is_not(None),
                )
                .values(managed=False, pending_revision=None, updated_at=utcnow())
            )
            return bool(getattr(result, "rowcount", 0))

    async def history(self, room_id: str) -> list[SpecVersion]:
        query = (
            select(SpecVersionRow).where(SpecVersionRow.room_id == room_id).order_by(SpecVersionRow.revision)
        )
        async with self._sessions() as session:
            return [_record(SpecVersion, row) for row in (await session.scalars(query)).all()]

    # Runs --------------------------------------------------------------------------------------------

    async def add_run(self, run: RunRecord) -> None:
        await self._write((), insert(RUNS).values(column_values(run)))  # shallow: no copy of its spec

    async def update_run(
        self,
        correlation_id: str,
        *,
        status: RunStatus,
        result: dict[str, Any] | None = None,
        superseded_by: str | None = None,
        superseded_by_revision: int | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status}
        if status in ("succeeded", "failed", "superseded"):
            values["finished_at"] = utcnow()
        if result is not None:
            values["result"] = result
        if superseded_by is not None:
            values["superseded_by"] = superseded_by
        if superseded_by_revision is not None:
            values["superseded_by_revision"] = superseded_by_revision
        statement = update(RunRow).where(RunRow.correlation_id == correlation_id).values(**values)
        if self.fencing is None:
            await self._write((), statement)
            return
        async with self._sessions.begin() as session:
            room_id = await session.scalar(
                select(RunRow.room_id).where(RunRow.correlation_id == correlation_id)
            )
            if room_id is not None:
                await check_lease(session, self.fencing, room_id)
            await session.execute(statement)

    async def get_run(self, correlation_id: str) -> RunRecord | None:
        async with self._sessions() as session:
            row = await session.get(RunRow, correlation_id)
            return _record(RunRecord, row) if row else None

    async def unfinished_runs(self, *, room_ids: Collection[str] | None = None) -> list[RunRecord]:
        """Runs accepted but not finished (a crash or restart interrupted them, or another replica accepted
        them), oldest first; of `room_ids` only when given."""
        query = select(RunRow).where(RunRow.status.in_(("queued", "running"))).order_by(RunRow.created_at)
        if room_ids is not None:
            query = query.where(RunRow.room_id.in_(sorted(room_ids)))
        async with self._sessions() as session:
            return [_record(RunRecord, row) for row in (await session.scalars(query)).all()]

    # Audit and intents -----------------------------------------------------------------------------

    async def record(self, entry: AuditEntry) -> None:
        """Persist one audit entry (the `AuditSink` protocol); returns once it is committed."""
        await self._journal.submit(_Journaled(entries=(entry,)))

    async def intend(self, intents: Sequence[Intent]) -> None:
        """Persist the intents of writes about to be made; returns once they are committed. In replica
        mode the intents of a room whose lease this replica lost raise `FencedError` (none is kept)."""
        if intents:
            rooms = {intent.entry.room_id for intent in intents}
            await self.fenced(
                self._journal.submit(_Journaled(intents=tuple(intents), fenced=self.writes_of(rooms)))
            )

    async def settle(self, settled: Sequence[tuple[str, AuditEntry | None]]) -> None:
        """Drop settled intents (by id) and persist their writes' audit entries (None: not made), all in
        one transaction, in order."""
        if settled:
            entries = tuple(entry for _, entry in settled if entry is not None)
            await self._journal.submit(_Journaled(entries=entries, settles=tuple(i for i, _ in settled)))

    def writes_of(self, room_ids: Collection[str]) -> tuple[Write, ...]:
        """In replica mode, the writes of `room_ids` with the epoch each carries now (the run's, in a run:
        call it in the writer's own context); none otherwise."""
        fencing = self.fencing
        return () if fencing is None else tuple((room_id, fencing.epoch(room_id)) for room_id in room_ids)

    async def refused(self, session: AsyncSession, writes: Iterable[Write]) -> dict[Write, str]:
        """Of `writes`, those this replica may not make (replica mode; `leases.refusals`), in `session`."""
        writes = list(writes)
        return await refusals(session, self.fencing, writes) if self.fencing and writes else {}

    async def fenced(self, write: Awaitable[R]) -> R:
        """Await a group-committed `write`; when it was fenced, tell the fencing state in the writer's own
        context (whether the lease is lost depends on the run's epoch, `Fencing.fenced`) and raise."""
        try:
            return await write
        except FencedError as exc:
            if self.fencing is not None and exc.room_id in self.fencing.held:  # not: never held here
                self.fencing.fenced(exc.room_id, str(exc))
            raise

    async def open_intents(self, *, room_ids: Collection[str] | None = None) -> list[Intent]:
        """Intents never settled (a crash or stop interrupted their writes), oldest first; of `room_ids`
        only when given (a replica taking rooms over)."""
        query = select(IntentRow).order_by(IntentRow.created_at)
        if room_ids is not None:
            query = query.where(IntentRow.room_id.in_(sorted(room_ids)))
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [
            Intent(
                id=row.id,
                op=row.op,
                target=row.target,
                since=row.since,
                entry=AuditEntry.model_validate(row.entry),
            )
            for row in rows
        ]

    async def _commit_journal(self, batch: Sequence[_Journaled]) -> list[Exception | None]:
        """One group commit of the journal. In replica mode the intents of rooms whose lease this replica
        lost are refused (`FencedError` to their writers), in the same transaction as the others' commit."""
        async with self._writing(), self._sessions.begin() as session:
            refused = await self.refused(session, (write for item in batch for write in item.fenced))
            results: list[Exception | None] = []
            for item in batch:
                lost = next((write for write in item.fenced if write in refused), None)
                results.append(None if lost is None else FencedError(lost[0], refused[lost]))
            kept = [item for item, result in zip(batch, results, strict=True) if result is None]
            entries = [entry for item in kept for entry in item.entries]
            now = utcnow()
            intents = [
                {
                    "id": intent.id,
                    "correlation_id": intent.entry.correlation_id,
                    "room_id": intent.entry.room_id,
                    "op": intent.op,
                    "target": intent.target,
                    "since": intent.since,
                    "entry": intent.entry.model_dump(mode="json"),
                    "created_at": now,
                }
                for item in kept
                for intent in item.intents
            ]
            settled = [intent_id for item in kept for intent_id in item.settles]
            if intents:
                await session.execute(insert(INTENTS), intents)
            if entries:
                await session.execute(insert(AUDIT), [_audit_row(e) for e in entries])
            if settled:
                await session.execute(delete(INTENTS).where(INTENTS.c.id.in_(settled)))
        return results

    async def audit(
        self,
        *,
        count: int = 100,
        correlation_id: str | None = None,
        room_id: str | None = None,
        action: str | None = None,
        since: dt.datetime | None = None,
    ) -> list[AuditEntry]:
        """The last `count` matching entries, oldest first (all of a correlation id when given)."""
        if count <= 0 and not correlation_id:
            return []
        query = select(AuditRow).order_by(AuditRow.id.desc())
        if correlation_id:
            query = query.where(AuditRow.correlation_id == correlation_id)
        else:
            query = query.limit(count)
        if room_id:
            query = query.where(AuditRow.room_id == room_id)
        if action:
            query = query.where(AuditRow.action == action)
        if since is not None:
            query = query.where(AuditRow.timestamp >= since)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [_entry(row) for row in reversed(rows)]
