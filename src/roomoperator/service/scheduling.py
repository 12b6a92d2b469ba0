"""When rooms run: the loop's `Schedule` (due times, jitter, backoff) over the per-room `RoomQueue`.

A room comes due, or the room server reports a change in it, and a run of its desired spec is queued
unless the room is busy with one that will see the change anyway. Requests from callers go through
`submit`, where the latest one wins a room's single pending slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from roomoperator.service.looping import Schedule
from roomoperator.service.queueing import RoomQueue, Submitted
from roomoperator.service.runs import RunRequest
from roomoperator.settings import ReconciliationSettings


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
        """Wait until no room is running or pending."""
        await self._queue.join()

    def pending(self, room_id: str) -> RunRequest | None:
        return self._queue.pending(room_id)

    def submit(self, request: RunRequest) -> Submitted[RunRequest]:
        """Run `request` now, or make it the room's pending run (replacing, and returning, the older one)."""
        return self._queue.submit(request.room_id, request)

    def after_run(self, room_id: str, *, failures: int = 0) -> None:
        self.schedule.after_run(room_id, failures=failures)

    def forget(self, room_id: str) -> None:
        """Take the room off the loop (unmanaged, or about to run a resumed request)."""
        self.schedule.remove(room_id)

    def on_room_event(self, room_id: str) -> None:
        """The room server reported a change in `room_id`: reconcile it now (drift correction)."""
        if not self._managed(room_id):
            return
        if self._queue.busy(room_id):
            # The running run may have read the room before the change: one follow-up, unless a
            # request is pending already (it reads the room afresh).
            self._queue.submit(room_id, RunRequest.of(room_id, "event"), wins=lambda _: False)
        else:
            self.schedule.wake(room_id)

    def _on_due(self, room_id: str) -> None:
        if not self._managed(room_id) or self._queue.busy(room_id):
            return
        self._queue.submit(room_id, RunRequest.of(room_id, "loop"))
        self._on_queue_change()
