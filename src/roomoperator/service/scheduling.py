"""When rooms run: the loop's `Schedule` (due times, jitter, backoff) over the per-room `RoomQueue`.

A room comes due, or the room server reports a change in it, and a run of its desired spec is queued.
Requests from callers go through `submit`, where the latest one wins a room's single pending slot; they
run at once (an apply, a restore, an explicit reconcile: a person asked).

Every other trigger keeps the room's failure backoff. A room-server event makes the room due now, or when
its backoff ends, and only when it is news: each run reports the room's revision at its last state read
(`RunResult.room_revision`, the id of the room's last event then), and an event whose id is not above it
was caused by the run's own writes or seen by it. Events that arrive while the room runs are kept until
the run ends and judged against its last read then, so the operator's own writes never start a run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from roomoperator.service.looping import Schedule
from roomoperator.service.queueing import RoomQueue, Submitted
from roomoperator.service.runs import RunRequest
from roomoperator.settings import ReconciliationSettings
from roomoperator.store.records import RunTrigger


class Scheduler:
    """Runs `work(request)` per room, one at a time, when rooms come due or are asked for."""

    def __init__(
        self,
        settings: ReconciliationSettings,
        *,
        work: Callable[[RunRequest], Awaitable[None]],
        managed: Callable[[str], bool],
        on_queue_change: Callable[[], None],
    ) -> None:
        self.schedule = Schedule(
            interval=settings.interval_seconds,
            jitter_percent=settings.jitter_percent,
            backoff_initial=settings.failure_backoff_initial_seconds,
            backoff_max=settings.failure_backoff_max_seconds,
        )
        self._queue: RoomQueue[RunRequest] = RoomQueue(work, parallel=settings.parallel_rooms)
        self._managed = managed
        self._on_queue_change = on_queue_change
        self._loop: asyncio.Task[None] | None = None
        self._seen: dict[str, int] = {}
        """Per room: its revision at the last run's last state read (events up to it are not news)."""
        self._arrived: dict[str, int | None] = {}
        """Per room: the newest event that arrived while it ran (None: one without an id)."""
        self._by_event: set[str] = set()
        """Rooms made due by an event (their run's trigger says so)."""

    @property
    def queued(self) -> int:
        """Rooms with a pending run."""
        return self._queue.queued

    @property
    def active(self) -> int:
        """Runs in flight."""
        return self._queue.active

    def start(self) -> None:
        self._loop = asyncio.create_task(self.schedule.run(self._on_due), name="reconcile-loop")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        await self._queue.close()

    async def join(self) -> None:
        """Wait until no room is running, pending or due now (an event just woke it)."""
        await self._queue.join()
        while self.schedule.seconds_until_next() == 0:
            await asyncio.sleep(0)  # the loop hands the due rooms to the queue
            await self._queue.join()

    def pending(self, room_id: str) -> RunRequest | None:
        return self._queue.pending(room_id)

    def submit(self, request: RunRequest) -> Submitted[RunRequest]:
        """Run `request` now, or make it the room's pending run (replacing, and returning, the older one)."""
        return self._queue.submit(request.room_id, request)

    def after_run(self, room_id: str, *, failures: int = 0, room_revision: int | None = None) -> None:
        """Schedule the room's next run (an interval after success, its backoff after `failures`); the
        run last read the room at `room_revision`. An event that arrived meanwhile and is news to it makes
        the room due at once, or when the backoff ends."""
        self.schedule.after_run(room_id, failures=failures)
        if room_revision is None:
            self._seen.pop(room_id, None)
        else:
            self._seen[room_id] = room_revision
        if room_id in self._arrived and self._news(room_id, self._arrived.pop(room_id)):
            self._wake(room_id)

    def forget(self, room_id: str) -> None:
        """Take the room off the loop (unmanaged, or about to run a resumed request)."""
        self.schedule.remove(room_id)
        self._arrived.pop(room_id, None)
        self._by_event.discard(room_id)

    def drop(self, room_id: str) -> RunRequest | None:
        """Stop the room altogether (this replica lost it): off the loop, its run cancelled; its pending
        request is handed back (its run row stays queued in the store for the room's next owner)."""
        self.forget(room_id)
        self._seen.pop(room_id, None)
        return self._queue.cancel(room_id)

    def wake(self, room_id: str) -> None:
        """Make a scheduled room due now (a replica took it over)."""
        self.schedule.wake(room_id)

    def idle(self, room_id: str) -> bool:
        """No run of the room in flight or pending."""
        return not self._queue.busy(room_id)

    def on_room_event(self, room_id: str, seq: int | None = None) -> bool:
        """The room server reported event `seq` (its id) in `room_id`: when it is news, reconcile the room
        now, or when its backoff ends (drift correction); while the room runs, once the run has ended.
        True when the event may be news to the room's runs (managed here, and not read by its last run)."""
        if not self._managed(room_id):
            return False
        if self._queue.busy(room_id):
            previous = self._arrived.get(room_id, 0)
            newest = None if seq is None or previous is None else max(seq, previous)
            self._arrived[room_id] = newest
            return True
        if self._news(room_id, seq):
            self._wake(room_id)
            return True
        return False

    def _news(self, room_id: str, seq: int | None) -> bool:
        """Is event `seq` newer than what the room's last run read? (An event without an id always is.)"""
        seen = self._seen.get(room_id)
        return seq is None or seen is None or seq > seen

    def _wake(self, room_id: str) -> None:
        if room_id in self.schedule:
            self._by_event.add(room_id)
            self.schedule.wake(room_id)

    def _on_due(self, room_id: str) -> None:
        trigger: RunTrigger = "event" if room_id in self._by_event else "loop"
        self._by_event.discard(room_id)
        if not self._managed(room_id) or self._queue.busy(room_id):
            return
        self._queue.submit(room_id, RunRequest.of(room_id, trigger))
        self._on_queue_change()
