"""Group commit (`store/committing.py`) and the store's writes through it, on SQLite and PostgreSQL: writes
queued together share a transaction, one write of a room per transaction, one item's error stays its
own, and a commit that fails fails every item in it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy import event

from roomoperator.model.audit import utcnow
from roomoperator.store import RunRecord, SpecVersion, Store
from roomoperator.store.batching import Desired, RunBook, RunOutcome, StoredStatus
from roomoperator.store.committing import GroupCommit


def revision(room_id: str, number: int, *, cid: str | None = None) -> SpecVersion:
    spec = {"metadata": {"name": room_id, "version": number}, "spec": {"roomId": room_id}}
    return SpecVersion(
        room_id=room_id,
        revision=number,
        spec_version=number,
        spec=spec,
        actor=None,
        correlation_id=cid or f"{room_id}-c{number}",
        diff=None,
        applied_at=utcnow(),
    )


def queued(room_id: str, number: int) -> RunRecord:
    return RunRecord(f"{room_id}-c{number}", room_id, "apply", "queued", utcnow(), revision=number)


def commits(store: Store) -> list[int]:
    """A list that grows by one at every commit of `store`'s engine."""
    seen: list[int] = []
    event.listen(store.engine.sync_engine, "commit", lambda connection: seen.append(1))
    return seen


async def test_items_queued_during_a_commit_share_the_next_and_a_key_waits_for_its_turn() -> None:
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def commit(items: Sequence[str]) -> list[str]:
        batches.append(list(items))
        await release.wait()
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(commit, key=lambda item: item[0])
    first = asyncio.create_task(group.submit("a1"))
    await asyncio.sleep(0)  # the first commit is in flight
    rest = [asyncio.create_task(group.submit(item)) for item in ("b1", "a2", "c1", "a3")]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(first, *rest) == ["A1", "B1", "A2", "C1", "A3"]
    assert batches == [["a1"], ["b1", "a2", "c1"], ["a3"]]  # one item of key "a" per commit, in order


async def test_an_items_error_is_its_own_and_a_failed_commit_fails_every_item() -> None:
    async def commit(items: Sequence[int]) -> list[int | Exception]:
        if 13 in items:
            raise OSError("disk full")
        return [KeyError(item) if item < 0 else item * 2 for item in items]

    group: GroupCommit[int, int] = GroupCommit(commit)
    good, bad = await asyncio.gather(group.submit(2), group.submit(-1), return_exceptions=True)
    assert (good, type(bad)) == (4, KeyError)
    results = await asyncio.gather(group.submit(1), group.submit(13), return_exceptions=True)
    assert [str(result) for result in results] == ["disk full", "disk full"]
    assert await group.submit(5) == 10  # the queue goes on after a failed commit


async def test_concurrent_acceptances_share_a_transaction_and_each_keeps_its_compare_and_set(
    store: Store,
) -> None:
    seen = commits(store)
    rooms = [f"room-group-{n:02d}" for n in range(20)]
    assert all(
        await asyncio.gather(*(store.accept_revision(revision(r, 1), run=queued(r, 1)) for r in rooms))
    )
    assert len(seen) < len(rooms)  # grouped
    contested = await asyncio.gather(
        *(store.accept_revision(revision(rooms[0], 2, cid=f"c{n}")) for n in range(5)),
        store.accept_revision(revision(rooms[1], 3)),  # not the next revision
        store.accept_revision(revision(rooms[2], 2)),
    )
    assert contested == [True, False, False, False, False, False, True]
    assert [v.revision for v in await store.history(rooms[0])] == [1, 2]
    assert (await store.latest_revisions())[rooms[0]].correlation_id == "c0"
    run = await store.get_run(f"{rooms[5]}-c1")
    assert run is not None
    assert run.status == "queued"


async def test_finishes_of_many_rooms_share_a_transaction_and_an_unknown_revision_fails_alone(
    store: Store,
) -> None:
    rooms = [f"room-group-{n:02d}" for n in range(10)]
    for room in rooms:
        assert await store.accept_revision(revision(room, 1), run=queued(room, 1))
    book, seen = RunBook(store), commits(store)
    status = StoredStatus([{"type": "Ready", "status": "True"}], 0, {"success": True})
    await asyncio.gather(*(book.started(room, f"{room}-c1") for room in rooms))
    results = await asyncio.gather(
        *(
            book.finished(
                room,
                desired=Desired(7 if room == rooms[3] else 1, confirmed=False),
                status=status,
                run=RunOutcome(f"{room}-c1", "succeeded", {"success": True}),
            )
            for room in rooms
        ),
        return_exceptions=True,
    )
    assert [type(result) for result in results] == [type(None)] * 3 + [KeyError] + [type(None)] * 6
    assert len(seen) < 2 * len(rooms)
    for room in rooms:
        record, run = await store.get_room(room), await store.get_run(f"{room}-c1")
        assert record is not None
        assert run is not None
        if room == rooms[3]:  # nothing of it written
            assert (record.managed, record.last_result, run.status) == (False, None, "running")
        else:
            assert (record.managed, record.revision, record.spec_version) == (True, 1, 1)
            assert (record.conditions, run.status) == (status.conditions, "succeeded")


async def test_an_acceptance_cancelled_before_its_commit_began_writes_nothing(store: Store) -> None:
    tasks = [asyncio.create_task(store.accept_revision(revision(r, 1))) for r in ("room-gone", "room-kept")]
    await asyncio.sleep(0)  # both queued; the commit has not begun
    tasks[0].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert (tasks[0].cancelled(), tasks[1].result()) == (True, True)
    assert (await store.history("room-gone"), len(await store.history("room-kept"))) == ([], 1)
