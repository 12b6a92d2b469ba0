"""The audit log: every entry is persisted in the store, then fanned out to `GET /events` subscribers.

It is also the engine's `Journal`: the intent of every write to the room server is committed before the
call and settled, with the write's audit entry, in one transaction after it; what a crash leaves open is
settled before the room's next run (`engine/settling.py`), so the log holds one entry per write made,
`kill -9` or not. Each subscriber has a bounded buffer that drops its oldest entries when full (as the
reference did), so a slow client never slows the operator down.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence

from roomoperator.model.audit import AuditEntry, Intent
from roomoperator.store import Store


class AuditLog:
    """An `AuditSink` and `Journal` that stores entries durably and streams them live.

    Loop runs of converged rooms would log the same phase markers (`reconcile.*`) every few seconds
    for every room: their correlation ids are `hold`-ed, markers are kept back until the run turns out
    to matter (a write is audited, or `release(keep=True)` after a change or failure). Entries of
    actions on the room are never held back, so a crash loses none of them.
    """

    def __init__(self, store: Store, *, buffer: int = 256) -> None:
        self._store = store
        self._buffer = buffer
        self._subscribers: set[asyncio.Queue[AuditEntry | None]] = set()
        self._held: dict[str, list[AuditEntry]] = {}

    def hold(self, correlation_id: str) -> None:
        self._held[correlation_id] = []

    async def release(self, correlation_id: str, *, keep: bool) -> None:
        held = self._held.pop(correlation_id, [])
        if keep:
            for entry in held:
                await self._write(entry)

    async def record(self, entry: AuditEntry) -> None:
        held = self._held.get(entry.correlation_id)
        if held is not None:
            if entry.action.startswith("reconcile."):
                held.append(entry)
                return
            await self.release(entry.correlation_id, keep=True)
        await self._write(entry)

    async def intend(self, intents: Sequence[Intent]) -> None:
        await self._store.intend(intents)

    async def settle(self, settled: Sequence[tuple[Intent, AuditEntry | None]]) -> None:
        """Settle each intent with the audit entry of its write, or with none (not made), in one
        transaction."""
        made = [entry for _, entry in settled if entry is not None]
        for correlation_id in dict.fromkeys(e.correlation_id for e in made if e.correlation_id in self._held):
            await self.release(correlation_id, keep=True)
        await self._store.settle([(intent.id, entry) for intent, entry in settled])
        for entry in made:
            self._publish(entry)

    async def _write(self, entry: AuditEntry) -> None:
        await self._store.record(entry)
        self._publish(entry)

    def _publish(self, entry: AuditEntry) -> None:
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(entry)

    def close(self) -> None:
        """End every subscriber's stream (shutdown: open `/events` connections must not hold it up)."""
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    async def entries(
        self,
        *,
        count: int,
        correlation_id: str | None = None,
        room_id: str | None = None,
        action: str | None = None,
        since: dt.datetime | None = None,
    ) -> list[AuditEntry]:
        """The last `count` stored entries that match, oldest first (all of a correlation id when given)."""
        return await self._store.audit(
            count=count, correlation_id=correlation_id, room_id=room_id, action=action, since=since
        )

    async def subscribe(self, *, replay: int) -> AsyncIterator[AuditEntry]:
        """The last `replay` entries, oldest first, then live ones until the consumer stops."""
        queue: asyncio.Queue[AuditEntry | None] = asyncio.Queue(maxsize=self._buffer)
        self._subscribers.add(queue)
        try:
            replayed = await self._store.audit(count=replay)
            seen = {(e.correlation_id, e.action, e.timestamp) for e in replayed}
            for entry in replayed:
                yield entry
            while (live := await queue.get()) is not None:
                if (live.correlation_id, live.action, live.timestamp) not in seen:
                    yield live
        finally:
            self._subscribers.discard(queue)
