"""The store's replica part (PostgreSQL only): each replica's heartbeat, each room's lease, and the fencing
state the store's room writes check (`refusals`, `check_lease`).

A lease is one row of `room_leases`: its holder, its `epoch` (the fencing token: it only grows, and every
take increments it) and `expires_at`. Every time is the DATABASE's (`now()`), never a replica's, so clock
skew between nodes cannot give a room two owners: a lease is live while `expires_at > now()` on the one
server every replica asks. A take is one `INSERT ... ON CONFLICT DO UPDATE ... WHERE` the lease is free or
expired, so two replicas racing for a room cannot both win; a renewal extends only leases still live; a
hand-back expires the lease at once and keeps its epoch (the next take increments it). The service side
(which rooms to take, when to hand back) is `service/replicas.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker, create_async_engine

from roomoperator.store.errors import FencedError

if TYPE_CHECKING:
    from roomoperator.store.repository import Store

_HEARTBEAT = text(
    "INSERT INTO replicas (replica_id, started_at, heartbeat_at, url) VALUES (:me, now(), now(), :url)"
    " ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now()"
)
_LIVE = text(
    "SELECT replica_id FROM replicas WHERE heartbeat_at > now() - make_interval(secs => :lease)"
    " ORDER BY replica_id"
)
_RENEW = text(
    "UPDATE room_leases SET expires_at = now() + make_interval(secs => :lease)"
    " WHERE holder = :me AND room_id = ANY(CAST(:rooms AS text[])) AND expires_at > now()"
    " RETURNING room_id, epoch"
)
_CENSUS = text(
    "SELECT r.room_id, r.updated_at, l.holder, l.epoch, l.expires_at > now() AS live"
    " FROM rooms r LEFT JOIN room_leases l ON l.room_id = r.room_id"
)
_ACQUIRE = text(
    "INSERT INTO room_leases (room_id, holder, epoch, expires_at)"
    " SELECT room_id, :me, 1, now() + make_interval(secs => :lease)"
    " FROM unnest(CAST(:rooms AS text[])) AS room_id"
    " ON CONFLICT (room_id) DO UPDATE SET holder = :me, epoch = room_leases.epoch + 1,"
    " expires_at = EXCLUDED.expires_at WHERE room_leases.expires_at <= now()"
    " RETURNING room_id, epoch"
)
_RELEASE = text(
    "UPDATE room_leases SET expires_at = now() WHERE holder = :me AND room_id = ANY(CAST(:rooms AS text[]))"
)
_RELEASE_ALL = text("UPDATE room_leases SET expires_at = now() WHERE holder = :me AND expires_at > now()")
CHANNEL = "roomop_runs"
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :room)")
_LEAVE = text("DELETE FROM replicas WHERE replica_id = :me")
# The rows are locked in room-id order, one order for every such check.
_CHECK = text(
    "SELECT room_id, holder, epoch, expires_at > now() AS live FROM room_leases"
    " WHERE room_id = ANY(CAST(:rooms AS text[])) ORDER BY room_id FOR SHARE"
)


@dataclass(frozen=True)
class Lease:
    """A room's lease as the census read it: its holder, epoch, and whether it was live then."""

    holder: str
    epoch: int
    live: bool


@dataclass(frozen=True)
class Census:
    """One look at the store: the live replicas (heartbeat within the lease time, sorted) and every room
    with its lease (None: never leased) and the time its row last changed."""

    replicas: tuple[str, ...]
    leases: dict[str, Lease | None]
    updated: dict[str, dt.datetime | None]


RUN_EPOCH: ContextVar[tuple[str, int] | None] = ContextVar("roomop_run_epoch", default=None)
"""The room and epoch a run started with (set by the controller for the run's task and its children):
the run's writes carry that epoch, so a run of an older lease is refused even after the room was taken
back with a newer one."""


@dataclass
class Fencing:
    """This replica's leases as its writes check them: room id -> the epoch it holds. The store's room
    writes check the lease row in their own transaction (`refusals`); the room-server client sends the
    epoch (`clients/roomserver.py`). `on_refused(room_id, reason, lost)` hears of every write
    refused for a room (`lost`: the lease is gone; False for a leftover run of an older lease)."""

    replica_id: str
    held: dict[str, int] = field(default_factory=dict)
    on_refused: list[Callable[[str, str, bool], None]] = field(default_factory=list)

    def epoch(self, room_id: str) -> int | None:
        """The epoch a write of `room_id` carries: the epoch its run started with (`RUN_EPOCH`), else
        the one this replica holds; None when it does not hold the room."""
        held = self.held.get(room_id)
        bound = RUN_EPOCH.get()
        return bound[1] if held is not None and bound is not None and bound[0] == room_id else held

    def fenced(self, room_id: str, reason: str) -> None:
        """A write for `room_id` was refused (by the store or the room server): the lease is lost, unless
        the write came from a run of an older lease than the one held now (only that run is refused)."""
        bound, held = RUN_EPOCH.get(), self.held.get(room_id)
        lost = not (bound is not None and bound[0] == room_id and held is not None and held != bound[1])
        if lost:
            self.held.pop(room_id, None)
        for listener in self.on_refused:
            listener(room_id, reason, lost)


class LeaseBook:
    """The lease statements of one replica (`replica_id`) on a PostgreSQL store, on connections of their
    own (three: one listens), so a renewal never waits behind the runs' writes for a pooled connection.
    `notify` and `listen` tell the owner of a room that a run of it was accepted elsewhere (PostgreSQL
    `NOTIFY` on channel `roomop_runs`, the payload the room id; the period's poll is the safety net)."""

    def __init__(
        self, store: Store, *, replica_id: str, lease_seconds: float, url: str | None = None
    ) -> None:
        if store.dialect != "postgresql":
            raise ValueError("operator replicas need a PostgreSQL store")
        self._engine = create_async_engine(
            store.url, connect_args=store.connect_args, pool_size=3, max_overflow=0, pool_timeout=5
        )
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        self.replica_id = replica_id
        self._lease = lease_seconds
        self._url = url
        self._listener: AsyncConnection | None = None
        self._driver: Any = None

    async def close(self) -> None:
        await self._drop_listener()
        await self._engine.dispose()

    async def notify(self, room_id: str) -> None:
        """Tell every replica listening that a run of `room_id` waits in the store."""
        async with self._sessions.begin() as session:
            await session.execute(_NOTIFY, {"room": room_id})

    async def listen(self, on_room: Callable[[str], None]) -> None:
        """Call `on_room(room_id)` for every `notify` of any replica, from now until `close` (a lost
        connection stops it until `listen` is called again: see `listening`)."""
        await self._drop_listener()
        connection = await self._engine.connect()
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.add_listener(CHANNEL, lambda _conn, _pid, _channel, payload: on_room(payload))
        self._listener, self._driver = connection, driver

    @property
    def listening(self) -> bool:
        """True while the listening connection is open (the server restarted, or a network cut, ends it)."""
        return self._driver is not None and not self._driver.is_closed()

    async def _drop_listener(self) -> None:
        connection, driver = self._listener, self._driver
        self._listener = self._driver = None
        if connection is None:
            return
        if driver.is_closed():
            await connection.invalidate()  # cut: the pool must not hand it out again
            return
        try:
            await connection.close()
        except (OSError, SQLAlchemyError):
            await connection.invalidate()

    def _params(self, **more: object) -> dict[str, object]:
        return {"me": self.replica_id, "lease": self._lease, **more}

    async def heartbeat(self) -> None:
        """Say this replica is alive (created on the first call)."""
        async with self._sessions.begin() as session:
            await session.execute(_HEARTBEAT, self._params(url=self._url))

    async def renew(self, room_ids: Iterable[str]) -> dict[str, int]:
        """Extend the live leases of `room_ids` this replica holds, in one statement; the rooms still held,
        by epoch. (A room dropped here, after a refused write, is left to expire and be taken again.)"""
        rooms = sorted(room_ids)
        if not rooms:
            return {}
        async with self._sessions.begin() as session:
            rows = (await session.execute(_RENEW, self._params(rooms=rooms))).all()
        return {row.room_id: int(row.epoch) for row in rows}

    async def census(self) -> Census:
        async with self._sessions() as session:
            replicas = tuple((await session.scalars(_LIVE, self._params())).all())
            rows = (await session.execute(_CENSUS)).all()
        leases = {
            row.room_id: None if row.holder is None else Lease(row.holder, int(row.epoch), bool(row.live))
            for row in rows
        }
        return Census(replicas, leases, {row.room_id: row.updated_at for row in rows})

    async def acquire(self, room_ids: Iterable[str]) -> dict[str, int]:
        """Take the rooms whose lease is free or expired (one statement); the rooms taken, by new epoch."""
        rooms = sorted(room_ids)
        if not rooms:
            return {}
        async with self._sessions.begin() as session:
            rows = (await session.execute(_ACQUIRE, self._params(rooms=rooms))).all()
        return {row.room_id: int(row.epoch) for row in rows}

    async def release(self, room_ids: Iterable[str]) -> None:
        """Hand rooms back: their leases expire now (their epochs stay, the next take increments them)."""
        rooms = sorted(room_ids)
        if rooms:
            async with self._sessions.begin() as session:
                await session.execute(_RELEASE, self._params(rooms=rooms))

    async def leave(self) -> None:
        """A clean stop: every lease of this replica expires now and its heartbeat row goes."""
        async with self._sessions.begin() as session:
            await session.execute(_RELEASE_ALL, self._params())
            await session.execute(_LEAVE, self._params())


async def check_lease(
    session: AsyncSession, fencing: Fencing, room_id: str, *, epoch: int | None = None
) -> None:
    """Raise `FencedError` unless `fencing`'s replica holds `room_id`'s live lease with `epoch` (default:
    the epoch it holds), in `session`'s transaction (the lease row is share-locked until it ends, so a take
    cannot slip between this check and the write's commit)."""
    held = fencing.epoch(room_id) if epoch is None else epoch
    if held is None:
        raise FencedError(room_id, f"replica {fencing.replica_id} does not own room {room_id}")
    if (reason := (await refusals(session, fencing, [(room_id, held)])).get((room_id, held))) is not None:
        fencing.fenced(room_id, reason)
        raise FencedError(room_id, reason)


Write = tuple[str, int | None]
"""A write of a room: its id and the epoch it carries (None: this replica does not hold the room)."""


async def refusals(session: AsyncSession, fencing: Fencing, writes: Iterable[Write]) -> dict[Write, str]:
    """Of `writes`, those this replica may not make, with why: it does not hold the room's live lease with
    the write's epoch. The lease rows stay share-locked until `session`'s transaction ends (a take cannot
    slip in before the writes' commit)."""
    writes = set(writes)
    query = {"rooms": sorted({room_id for room_id, _ in writes})}
    rows = {row.room_id: row for row in (await session.execute(_CHECK, query)).all()}
    refused: dict[Write, str] = {}
    for room_id, held in writes:
        row = rows.get(room_id)
        if held is None:
            refused[room_id, held] = f"replica {fencing.replica_id} does not own room {room_id}"
        elif row is None or row.holder != fencing.replica_id or int(row.epoch) != held or not row.live:
            now = (
                "no lease"
                if row is None
                else f"lease {row.epoch} of {row.holder}{'' if row.live else ', expired'}"
            )
            refused[room_id, held] = (
                f"replica {fencing.replica_id} holds epoch {held} of room {room_id}, the store has {now}"
            )
    return refused
