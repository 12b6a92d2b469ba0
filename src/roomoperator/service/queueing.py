"""A per-room keyed work queue (controller-runtime / kopf style).

Each room runs at most one item at a time and holds at most one pending item; at most `parallel`
rooms run at once. Submitting to a busy room replaces its pending item when the new one `wins`
(the latest spec wins); the replaced item is handed back so the caller can record it as superseded.
`cancel` stops one room (an operator replica that lost the room's lease): its run is cancelled and its
pending item handed back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger(__name__)


@dataclass
class _Slot(Generic[T]):
    pending: T | None = None


@dataclass(frozen=True)
class Submitted(Generic[T]):
    """What `submit` did: started the item at once, queued it, or dropped it (`queued` and not `kept`)."""

    started: bool
    kept: bool
    superseded: T | None = None


class RoomQueue(Generic[T]):
    """Runs `work(item)` per room, serialised per room and bounded across rooms."""

    def __init__(self, work: Callable[[T], Awaitable[None]], *, parallel: int) -> None:
        self._work = work
        self._slots: dict[str, _Slot[T]] = {}
        self._limit = asyncio.Semaphore(parallel)
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_room: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self.active = 0
        self.queued = 0
        """Rooms with a pending item."""

    def busy(self, room_id: str) -> bool:
        return room_id in self._slots

    def pending(self, room_id: str) -> T | None:
        slot = self._slots.get(room_id)
        return slot.pending if slot else None

    def submit(self, room_id: str, item: T, *, wins: Callable[[T], bool] = lambda _: True) -> Submitted[T]:
        """Start `item` now if the room is idle; else make it the room's pending item if `wins(current)`."""
        if self._closing:
            return Submitted(started=False, kept=False)
        slot = self._slots.get(room_id)
        if slot is None:
            self._slots[room_id] = _Slot()
            task = asyncio.create_task(self._drain(room_id, item), name=f"room:{room_id}")
            self._tasks.add(task)
            self._by_room[room_id] = task
            task.add_done_callback(self._tasks.discard)
            return Submitted(started=True, kept=True)
        current = slot.pending
        if current is not None and not wins(current):
            return Submitted(started=False, kept=False)
        slot.pending = item
        self.queued += current is None
        return Submitted(started=False, kept=True, superseded=current)

    async def _drain(self, room_id: str, item: T) -> None:
        next_item: T | None = item
        try:
            while next_item is not None and not self._closing:
                async with self._limit:
                    self.active += 1
                    try:
                        await self._work(next_item)
                    except Exception:
                        log.exception("room work failed", room_id=room_id)
                    finally:
                        self.active -= 1
                slot = self._slots[room_id]
                next_item, slot.pending = slot.pending, None
                self.queued -= next_item is not None
        finally:
            self._by_room.pop(room_id, None)
            if (gone := self._slots.pop(room_id, None)) is not None and gone.pending is not None:
                self.queued -= 1
                if not self._closing:  # submitted after `cancel()` handed the pending item back: run it
                    self.submit(room_id, gone.pending)

    def cancel(self, room_id: str) -> T | None:
        """Stop the room: cancel its running item and hand back its pending one (None: none)."""
        slot = self._slots.get(room_id)
        if slot is None:
            return None
        pending, slot.pending = slot.pending, None
        self.queued -= pending is not None
        if (task := self._by_room.get(room_id)) is not None:
            task.cancel()
        return pending

    async def join(self) -> None:
        """Wait until every room is idle."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self, *, grace_seconds: float = 10.0) -> None:
        """Refuse new items, drop pending ones, cancel running ones and give them `grace_seconds` to end
        (an item that ignores cancellation must not hold up the operator's shutdown)."""
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace_seconds)
        self._slots.clear()
        self._by_room.clear()
        self.queued = 0
