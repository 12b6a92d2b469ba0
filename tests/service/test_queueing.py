"""The per-room keyed queue: one item per room at a time, one pending, latest wins, rooms in parallel."""

from __future__ import annotations

import asyncio
import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from roomoperator.service.queueing import RoomQueue


class Recorder:
    """Work that blocks until released, recording what ran and the peak concurrency."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []
        self.running = 0
        self.peak = 0
        self.gates: dict[tuple[str, int], asyncio.Event] = {}
        self.started: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

    def gate(self, item: tuple[str, int]) -> asyncio.Event:
        return self.gates.setdefault(item, asyncio.Event())

    async def work(self, item: tuple[str, int]) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await self.started.put(item)
        await self.gate(item).wait()
        self.running -= 1
        self.ran.append(item)


async def test_one_room_is_serialised_and_coalesced_to_the_latest() -> None:
    rec = Recorder()
    queue: RoomQueue[tuple[str, int]] = RoomQueue(rec.work, parallel=4)
    assert queue.submit("a", ("a", 1)).started
    assert await rec.started.get() == ("a", 1)
    second = queue.submit("a", ("a", 2))
    third = queue.submit("a", ("a", 3))
    assert (second.started, second.kept, second.superseded) == (False, True, None)
    assert third.superseded == ("a", 2)
    assert (queue.busy("a"), queue.pending("a"), queue.queued) == (True, ("a", 3), 1)
    rec.gate(("a", 1)).set()
    rec.gate(("a", 3)).set()
    await queue.join()
    assert rec.ran == [("a", 1), ("a", 3)]
    assert rec.peak == 1
    assert not queue.busy("a")


async def test_a_losing_item_is_dropped() -> None:
    rec = Recorder()
    queue: RoomQueue[tuple[str, int]] = RoomQueue(rec.work, parallel=1)
    queue.submit("a", ("a", 1))
    queue.submit("a", ("a", 2))
    dropped = queue.submit("a", ("a", 3), wins=lambda current: False)
    assert (dropped.started, dropped.kept) == (False, False)
    assert queue.pending("a") == ("a", 2)
    for item in [("a", 1), ("a", 2)]:
        rec.gate(item).set()
    await queue.join()
    assert rec.ran == [("a", 1), ("a", 2)]


async def test_rooms_run_in_parallel_up_to_the_bound() -> None:
    rec = Recorder()
    queue: RoomQueue[tuple[str, int]] = RoomQueue(rec.work, parallel=2)
    for room in "abc":
        queue.submit(room, (room, 1))
    first = {await rec.started.get(), await rec.started.get()}
    assert rec.running == 2
    assert rec.started.empty()
    for item in first:
        rec.gate(item).set()
    last = await rec.started.get()
    rec.gate(last).set()
    await queue.join()
    assert rec.peak == 2
    assert sorted(rec.ran) == [("a", 1), ("b", 1), ("c", 1)]


async def test_failing_work_does_not_wedge_the_room() -> None:
    ran: list[int] = []

    async def work(item: int) -> None:
        ran.append(item)
        if item == 1:
            raise RuntimeError("boom")

    queue: RoomQueue[int] = RoomQueue(work, parallel=1)
    queue.submit("a", 1)
    queue.submit("a", 2)
    await queue.join()
    assert ran == [1, 2]
    assert queue.submit("a", 3).started
    await queue.join()
    assert ran == [1, 2, 3]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=30))
def test_never_more_than_one_running_and_one_pending_per_room(ops: list[tuple[str, bool]]) -> None:
    async def scenario() -> None:
        active: dict[str, int] = {}
        violations: list[str] = []

        async def work(item: tuple[str, int]) -> None:
            room = item[0]
            active[room] = active.get(room, 0) + 1
            if active[room] > 1:
                violations.append(room)
            await asyncio.sleep(0)
            active[room] -= 1

        queue: RoomQueue[tuple[str, int]] = RoomQueue(work, parallel=2)
        submitted: dict[str, list[int]] = {}
        for index, (room, yield_now) in enumerate(ops):
            queue.submit(room, (room, index))
            submitted.setdefault(room, []).append(index)
            assert queue.queued <= 3
            if yield_now:
                await asyncio.sleep(0)
        await queue.join()
        assert violations == []
        assert queue.queued == 0

    asyncio.run(scenario())


async def test_close_drops_pending_items_and_refuses_new_ones() -> None:
    rec = Recorder()
    queue: RoomQueue[tuple[str, int]] = RoomQueue(rec.work, parallel=1)
    queue.submit("a", ("a", 1))
    queue.submit("a", ("a", 2))
    await rec.started.get()
    assert queue.queued == 1
    await queue.close()
    assert queue.queued == 0
    assert rec.ran == []
    assert rec.started.empty()
    refused = queue.submit("a", ("a", 3))
    assert (refused.started, refused.kept) == (False, False)


async def test_close_gives_up_on_work_that_ignores_cancellation() -> None:
    release, started = asyncio.Event(), asyncio.Event()

    async def stubborn(item: int) -> None:
        started.set()
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    queue: RoomQueue[int] = RoomQueue(stubborn, parallel=1)
    queue.submit("a", 1)
    await started.wait()
    await queue.close(grace_seconds=0.05)
    release.set()
    await queue.join()
