"""The continuous loop's clock: when each managed room is due again.

Every room comes due `interval` ±`jitter` after its last run, later after failures (the operator's one
backoff formula, `model.backoff.Backoff`, with its jitter drawn from [-1, 1)), and at once when `wake`
is called (a room-server event reported a change). The loop itself sleeps until the earliest due room
or a wake-up; a heap with lazy invalidation keeps that cheap at thousands of rooms.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections.abc import Callable

from roomoperator.model.backoff import Backoff


class Schedule:
    """Due times per room, with jitter and backoff."""

    def __init__(
        self,
        *,
        interval: float,
        jitter_percent: float,
        backoff_initial: float,
        backoff_max: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.jitter = jitter_percent / 100
        self.backoff = Backoff(initial=backoff_initial, maximum=backoff_max, jitter=self.jitter)
        self._rng = rng or random.Random()
        self._clock = clock
        self._due: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()

    def __contains__(self, room_id: str) -> bool:
        return room_id in self._due

    def __len__(self) -> int:
        return len(self._due)

    def jittered(self, seconds: float) -> float:
        return seconds * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def backoff_delay(self, failures: int) -> float:
        """Delay after `failures` consecutive failures: initial * 2^(n-1), capped, jittered both ways."""
        return self.backoff.delay(failures, uniform=self._rng.uniform(-1, 1))

    def _set(self, room_id: str, when: float) -> None:
        self._due[room_id] = when
        heapq.heappush(self._heap, (when, room_id))
        self._changed.set()

    def after_run(self, room_id: str, *, failures: int = 0) -> None:
        """Schedule the room's next run: an interval after success, a backoff after failures."""
        now = self._clock()
        if failures:
            self._not_before[room_id] = now + self.backoff_delay(failures)
            self._set(room_id, self._not_before[room_id])
        else:
            self._not_before.pop(room_id, None)
            self._set(room_id, now + self.jittered(self.interval))

    def wake(self, room_id: str) -> None:
        """Make a scheduled room due now (or when its backoff ends)."""
        if room_id in self._due:
            self._set(room_id, max(self._clock(), self._not_before.get(room_id, 0.0)))

    def remove(self, room_id: str) -> None:
        self._due.pop(room_id, None)
        self._not_before.pop(room_id, None)

    def pop_due(self) -> list[str]:
        """Rooms due now; they leave the schedule until `after_run` puts them back."""
        now = self._clock()
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            when, room_id = heapq.heappop(self._heap)
            if self._due.get(room_id) == when:
                del self._due[room_id]
                due.append(room_id)
        return due

    def seconds_until_next(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return max(0.0, self._heap[0][0] - self._clock()) if self._heap else None

    async def run(self, on_due: Callable[[str], None]) -> None:
        """Call `on_due(room_id)` for every room as it comes due, forever."""
        while True:
            self._changed.clear()
            for room_id in self.pop_due():
                on_due(room_id)
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` can swallow a cancellation
            # that races with the event being set, and the loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.seconds_until_next()):
                    await self._changed.wait()
