"""Room leases and store-side fencing on the real PostgreSQL: takes race for free leases only, epochs only
grow, renewals keep only live leases, and a room write of a replica that lost the lease is refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from roomoperator.model.audit import AuditEntry, Intent, utcnow
from roomoperator.store import FencedError, RunRecord, Store
from roomoperator.store.batching import Desired, RunBook, StoredStatus
from roomoperator.store.leases import RUN_EPOCH, Fencing, LeaseBook
from tests.store.conftest import cut_listener, postgres_schema, postgres_url

pytestmark = pytest.mark.postgres
ROOM = "room-lease-01"


@pytest.fixture
async def pg() -> AsyncIterator[tuple[Store, Store]]:
    """Two stores (two replicas' connections) on one fresh PostgreSQL schema."""
    url = await postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")
    async with postgres_schema(url) as schema:
        first, second = Store(url, schema=schema), Store(url, schema=schema)
        await first.migrate()
        try:
            yield first, second
        finally:
            while _books:
                await _books.pop().close()
            await first.close()
            await second.close()


_books: list[LeaseBook] = []


def replica(store: Store, name: str, *, lease: float = 30.0) -> LeaseBook:
    """Replica `name`'s lease statements on `store`, whose room writes it now fences."""
    store.fencing = Fencing(name)
    _books.append(LeaseBook(store, replica_id=name, lease_seconds=lease))
    return _books[-1]


async def expire(store: Store, room_id: str) -> None:
    """The lease runs out (as if its holder had been paused past it), by the database's clock."""
    async with store.sessions.begin() as session:
        await session.execute(
            text("UPDATE room_leases SET expires_at = now() - interval '1 second' WHERE room_id = :r"),
            {"r": room_id},
        )


async def test_one_take_wins_and_the_epoch_grows_at_every_take(pg: tuple[Store, Store]) -> None:
    one, two = replica(pg[0], "r1"), replica(pg[1], "r2")
    first, second = await asyncio.gather(one.acquire([ROOM]), two.acquire([ROOM]))
    assert sorted([*first, *second]) == [ROOM]  # exactly one of the racing takes won
    winner, loser = (one, two) if first else (two, one)
    assert (first or second)[ROOM] == 1
    assert await loser.acquire([ROOM]) == {}  # a live lease is not taken
    await winner.release([ROOM])
    assert await loser.acquire([ROOM]) == {ROOM: 2}  # a hand-back keeps the epoch; the take increments it
    await expire(pg[0], ROOM)
    assert await loser.renew([ROOM]) == {}  # an expired lease is not renewed
    assert await winner.acquire([ROOM]) == {ROOM: 3}


async def test_census_sees_live_replicas_and_every_room(pg: tuple[Store, Store]) -> None:
    await RunBook(pg[0]).finished("room-a", status=StoredStatus([], 0, None))
    await RunBook(pg[0]).finished("room-b", status=StoredStatus([], 0, None))
    one, two = replica(pg[0], "r1"), replica(pg[1], "r2")
    await one.heartbeat()
    await two.heartbeat()
    await one.acquire(["room-a"])
    census = await two.census()
    assert census.replicas == ("r1", "r2")
    lease = census.leases["room-a"]
    assert lease is not None
    assert (lease.holder, lease.epoch, lease.live) == ("r1", 1, True)
    assert census.leases["room-b"] is None
    await two.leave()
    assert (await one.census()).replicas == ("r1",)


async def test_a_room_write_after_the_lease_moved_is_refused(pg: tuple[Store, Store]) -> None:
    old, new = replica(pg[0], "r1"), replica(pg[1], "r2")
    assert pg[0].fencing is not None
    assert pg[1].fencing is not None
    pg[0].fencing.held.update(await old.acquire([ROOM]))
    refused: list[str] = []
    pg[0].fencing.on_refused.append(lambda room_id, reason, lost: refused.append(room_id))
    await RunBook(pg[0]).finished(ROOM, status=StoredStatus([], 0, None))
    await expire(pg[0], ROOM)
    pg[1].fencing.held.update(await new.acquire([ROOM]))
    with pytest.raises(FencedError, match="r1 holds epoch 1 of room room-lease-01, the store has lease 2"):
        await RunBook(pg[0]).finished(ROOM, status=StoredStatus([{"x": 1}], 9, None))
    assert refused == [ROOM]
    assert pg[0].fencing.epoch(ROOM) is None
    with pytest.raises(FencedError, match="does not own"):
        await RunBook(pg[0]).finished(ROOM, desired=Desired(1, False))
    await RunBook(pg[1]).finished(ROOM, status=StoredStatus([], 1, None))
    room = await pg[1].get_room(ROOM)
    assert room is not None
    assert room.cycles_since_converged == 1


async def test_in_a_group_commit_only_the_lost_rooms_writes_are_refused(pg: tuple[Store, Store]) -> None:
    old, new = replica(pg[0], "r1"), replica(pg[1], "r2")
    assert pg[0].fencing is not None
    assert pg[1].fencing is not None
    kept, lost = "room-kept", ROOM
    pg[0].fencing.held.update(await old.acquire([kept, lost]))
    await expire(pg[0], lost)
    pg[1].fencing.held.update(await new.acquire([lost]))
    book = RunBook(pg[0])
    results = await asyncio.gather(
        book.finished(kept, status=StoredStatus([], 4, None)),
        book.finished(lost, status=StoredStatus([], 5, None)),
        return_exceptions=True,
    )
    assert results[0] is None
    assert isinstance(results[1], FencedError)
    assert "the store has lease 2 of r2" in str(results[1])
    assert (pg[0].fencing.epoch(kept), pg[0].fencing.epoch(lost)) == (1, None)
    rows = [await pg[1].get_room(room) for room in (kept, lost)]
    assert [row.cycles_since_converged if row else None for row in rows] == [4, None]


async def test_runs_and_intents_of_a_lost_room_are_refused(pg: tuple[Store, Store]) -> None:
    old = replica(pg[0], "r1")
    assert pg[0].fencing is not None
    pg[0].fencing.held.update(await old.acquire([ROOM, "room-other"]))
    run = RunRecord(
        correlation_id="run-1", room_id=ROOM, trigger="apply", status="queued", created_at=utcnow()
    )
    await pg[0].add_run(run)
    await pg[0].update_run("run-1", status="running")
    await expire(pg[0], ROOM)
    with pytest.raises(FencedError):
        await pg[0].update_run("run-1", status="succeeded")
    assert (await pg[0].get_run("run-1")).status == "running"  # type: ignore[union-attr]

    def intent(room_id: str) -> Intent:
        entry = AuditEntry(
            action="entity.joined",
            correlation_id="run-1",
            operator_version="t",
            spec_version=1,
            room_id=room_id,
        )
        return Intent(id=f"i-{room_id}", op="put", target="e1", since=0, entry=entry)

    pg[0].fencing.held[ROOM] = 1  # as a paused replica still believes
    lost, kept = await asyncio.gather(
        pg[0].intend([intent(ROOM)]), pg[0].intend([intent("room-other")]), return_exceptions=True
    )
    assert isinstance(lost, FencedError)
    assert kept is None
    assert [i.entry.room_id for i in await pg[0].open_intents()] == ["room-other"]


async def test_a_leftover_run_of_an_older_lease_is_refused_and_the_new_lease_kept(
    pg: tuple[Store, Store],
) -> None:
    book = replica(pg[0], "r1")
    assert pg[0].fencing is not None
    pg[0].fencing.held.update(await book.acquire([ROOM]))
    await book.release([ROOM])
    pg[0].fencing.held.update(await book.acquire([ROOM]))  # taken back: epoch 2
    heard: list[bool] = []
    pg[0].fencing.on_refused.append(lambda room_id, reason, lost: heard.append(lost))
    token = RUN_EPOCH.set((ROOM, 1))  # a run that started under epoch 1
    try:
        with pytest.raises(FencedError, match="holds epoch 1"):
            await RunBook(pg[0]).finished(ROOM, status=StoredStatus([], 0, None))
    finally:
        RUN_EPOCH.reset(token)
    assert heard == [False]
    assert pg[0].fencing.epoch(ROOM) == 2  # the room stays held
    await RunBook(pg[0]).finished(ROOM, status=StoredStatus([], 0, None))


async def test_a_listener_cut_by_the_server_says_so_and_hears_again_once_listening_again(
    pg: tuple[Store, Store],
) -> None:
    listener, speaker = replica(pg[0], "r1"), replica(pg[1], "r2")
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.listen(heard.put_nowait)
    await speaker.notify(ROOM)
    assert await asyncio.wait_for(heard.get(), 5) == ROOM
    await cut_listener(listener, pg[1])
    assert not listener.listening
    await listener.listen(heard.put_nowait)
    assert listener.listening
    await speaker.notify("room-lease-02")
    assert await asyncio.wait_for(heard.get(), 5) == "room-lease-02"
