"""A replica that cannot reach its store stops its rooms' runs past the renew deadline (before its leases
can expire) and reports degraded; the rendezvous order is stable and spreads rooms."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from roomoperator.model.audit import AuditEntry
from roomoperator.service.health import Health, HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.replicas import Replicas, preferred
from roomoperator.settings import ReplicaSettings
from roomoperator.store import RunRecord, Store
from tests.store.conftest import cut_listener, postgres_schema, postgres_url


@dataclass
class Rooms:
    """What the replica tells the controller (`RoomOwner`), recorded."""

    dropped: list[str] = field(default_factory=list)

    async def take_rooms(self, room_ids: Sequence[str]) -> None: ...

    def drop_room(self, room_id: str) -> None:
        self.dropped.append(room_id)

    def room_idle(self, room_id: str) -> bool:
        return True

    async def pick_up(self, runs: Sequence[RunRecord]) -> None: ...

    async def announced(self, room_ids: Sequence[str]) -> None: ...

    async def refresh_rooms(self, room_ids: Sequence[str]) -> None: ...


class Audit:
    async def record(self, entry: AuditEntry) -> None: ...


async def test_past_the_renew_deadline_every_run_stops_and_health_is_degraded() -> None:
    store = Store("postgresql://postgres@127.0.0.1:9/test")  # nothing listens there: the store is down
    settings = ReplicaSettings(
        replica_id="r1", retry_seconds=0.001, renew_deadline_seconds=0.002, lease_seconds=30
    )
    health, rooms = HealthMonitor(), Rooms()
    replicas = Replicas(
        settings, store, metrics=OperatorMetrics(), health=health, audit=Audit(), operator_version="t"
    )
    replicas.attach(rooms)
    replicas.fencing.held.update({"room-a": 1, "room-b": 4})
    await asyncio.sleep(0.01)  # past the 2 ms renew deadline (time itself is the subject here)
    try:
        assert not await replicas.renew()  # the connection is refused, after the deadline
    finally:
        await replicas.book.close()
        await store.close()
    assert sorted(rooms.dropped) == ["room-a", "room-b"]
    assert replicas.owned == 0
    assert health.status is Health.DEGRADED
    assert health.checks()["leases"] == {"status": "degraded", "replica": "r1", "live": 0}


def test_rendezvous_is_stable_and_moves_only_a_dead_replicas_rooms() -> None:
    rooms = [f"room-{n:04d}" for n in range(3000)]
    three = {room: preferred(room, ["a", "b", "c"]) for room in rooms}
    shares = Counter(three.values())
    assert all(800 < shares[name] < 1200 for name in "abc"), shares
    two = {room: preferred(room, ["b", "c"]) for room in rooms}
    assert all(two[room] == owner for room, owner in three.items() if owner != "a")  # only a's rooms move
    assert preferred("room-x", []) is None


async def test_the_next_renewal_listens_again_after_the_server_cut_the_listening_connection() -> None:
    url = await postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")
    async with postgres_schema(url) as schema:
        store = Store(url, schema=schema)
        await store.migrate()
        replicas = Replicas(
            ReplicaSettings(replica_id="r1"),
            store,
            metrics=OperatorMetrics(),
            health=HealthMonitor(),
            audit=Audit(),
            operator_version="t",
        )
        replicas.attach(Rooms())
        try:
            await replicas.start()
            assert replicas.book.listening
            await cut_listener(replicas.book, store)
            assert not replicas.book.listening
            assert await replicas.renew()
            assert replicas.book.listening
        finally:
            await replicas.book.close()
            await store.close()
