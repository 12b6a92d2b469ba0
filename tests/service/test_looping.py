"""The loop's schedule: jitter bounds, backoff growth, wake-ups, lazy heap invalidation; the scheduler's
rule for room-server events (only news wakes a room, and never past its backoff)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from hypothesis import given
from hypothesis import strategies as st

from roomoperator.service.looping import Schedule
from roomoperator.service.runs import RunRequest
from roomoperator.service.scheduling import Scheduler
from roomoperator.settings import ReconciliationSettings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def schedule(clock: Clock, **overrides: float) -> Schedule:
    options: dict[str, float] = {
        "interval": 2.0,
        "jitter_percent": 10.0,
        "backoff_initial": 1.0,
        "backoff_max": 8.0,
    } | overrides
    return Schedule(**options, rng=random.Random(1), clock=clock)  # type: ignore[arg-type]


@given(st.floats(min_value=0.1, max_value=100), st.floats(min_value=0, max_value=100))
def test_jitter_stays_within_its_percent(interval: float, percent: float) -> None:
    plan = Schedule(interval=interval, jitter_percent=percent, backoff_initial=1, backoff_max=2)
    value = plan.jittered(interval)
    assert interval * (1 - percent / 100) - 1e-9 <= value <= interval * (1 + percent / 100) + 1e-9


def test_backoff_doubles_up_to_its_cap() -> None:
    plan = schedule(Clock(), jitter_percent=0)
    assert [plan.backoff_delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_rooms_come_due_after_their_interval_and_leave_the_schedule() -> None:
    clock = Clock()
    plan = schedule(clock)
    plan.after_run("a")
    plan.after_run("b", failures=3)
    assert plan.pop_due() == []
    clock.now += 2.3
    assert plan.pop_due() == ["a"]
    assert "a" not in plan
    clock.now += 2.5  # b backs off 4 s ± 10 %
    assert plan.pop_due() == ["b"]
    assert plan.seconds_until_next() is None


def test_wake_makes_a_room_due_now_but_respects_backoff() -> None:
    clock = Clock()
    plan = schedule(clock, jitter_percent=0)
    plan.after_run("a")
    plan.after_run("b", failures=2)
    plan.wake("a")
    plan.wake("b")
    plan.wake("unknown")
    assert plan.pop_due() == ["a"]
    assert plan.seconds_until_next() == 2.0


def test_rescheduling_and_removal_invalidate_older_entries() -> None:
    clock = Clock()
    plan = schedule(clock, jitter_percent=0)
    plan.after_run("a")
    plan.after_run("a", failures=3)  # now due in 4 s, not 2
    plan.after_run("b")
    plan.remove("b")
    clock.now += 2.5
    assert plan.pop_due() == []
    clock.now += 2
    assert plan.pop_due() == ["a"]
    assert len(plan) == 0


async def test_run_calls_back_when_rooms_are_woken() -> None:
    plan = Schedule(interval=60, jitter_percent=0, backoff_initial=1, backoff_max=1)
    seen: asyncio.Queue[str] = asyncio.Queue()
    plan.after_run("a")
    task = asyncio.create_task(plan.run(seen.put_nowait))
    plan.wake("a")
    assert await asyncio.wait_for(seen.get(), 5) == "a"
    task.cancel()


async def test_the_loop_stops_when_cancelled_while_being_woken() -> None:
    for _ in range(50):
        plan = Schedule(interval=60, jitter_percent=0, backoff_initial=1, backoff_max=1)
        plan.after_run("a")
        task = asyncio.create_task(plan.run(plan.after_run))
        await asyncio.sleep(0)  # let the loop reach its wait
        plan.wake("a")
        task.cancel()
        await asyncio.wait([task], timeout=2)
        assert task.cancelled(), "the cancellation was swallowed and the loop kept running"


def scheduler(work: Callable[[RunRequest], Awaitable[None]]) -> Scheduler:
    settings = ReconciliationSettings(
        interval_seconds=100,
        jitter_percent=0,
        failure_backoff_initial_seconds=50,
        failure_backoff_max_seconds=50,
    )
    return Scheduler(settings, work=work, managed=lambda _: True, on_queue_change=lambda: None)


async def test_an_event_during_a_failing_run_waits_for_the_backoff() -> None:
    release, ran = asyncio.Event(), []

    async def work(request: RunRequest) -> None:
        ran.append(request.trigger)
        await release.wait()
        plan.after_run(request.room_id, failures=1, room_revision=5)  # as the controller does

    plan = scheduler(work)
    plan.submit(RunRequest.of("room-a", "apply"))
    await asyncio.sleep(0)  # the run starts
    plan.on_room_event("room-a", 4)  # the run's own write (it read the room at 5 afterwards)
    plan.on_room_event("room-a", 7)  # someone else's change, after the run's last read
    release.set()
    await plan.join()
    assert ran == ["apply"], "no follow-up run right after the failed one"
    wait = plan.schedule.seconds_until_next()
    assert wait is not None
    assert 49 < wait <= 50, "due when the backoff ends"
    plan.on_room_event("room-a", 8)
    wait = plan.schedule.seconds_until_next()
    assert wait is not None
    assert 49 < wait <= 50, "an event does not cut the backoff short"


async def test_events_up_to_the_last_read_are_not_news() -> None:
    async def work(request: RunRequest) -> None:
        plan.after_run(request.room_id, room_revision=9)

    plan = scheduler(work)
    plan.submit(RunRequest.of("room-a", "apply"))
    await plan.join()
    for seq in (3, 9):  # the run's own writes, reported after it ended: not news (nor anyone's change)
        assert not plan.on_room_event("room-a", seq)
    wait = plan.schedule.seconds_until_next()
    assert wait is not None
    assert wait > 99, "still an interval away"
    assert plan.on_room_event("room-a", 10)
    assert plan.schedule.seconds_until_next() == 0
    plan.after_run("room-a", room_revision=10)
    plan.on_room_event("room-a", None)  # an event without an id is always news
    assert plan.schedule.seconds_until_next() == 0
