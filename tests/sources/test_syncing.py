"""The rooms of one sync are offered to the acceptance `SYNC_CONCURRENCY` at a time (issue 15): a real
folder of spec files and a real store, and a sink whose `declare` waits at a barrier that only that many
declarations in flight at once can pass (a serial loop never passes it), and which counts the most ever
in flight (never more than the bound)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from roomoperator.settings import SourceSettings
from roomoperator.sources.folder import FolderSource
from roomoperator.sources.scanning import Declared
from roomoperator.sources.syncing import SYNC_CONCURRENCY, Syncer
from roomoperator.store import Store
from tests.sources.conftest import write_spec
from tests.store.conftest import store

ROOMS = SYNC_CONCURRENCY * 3

__all__ = ["store"]  # the store fixture: SQLite and the local PostgreSQL


class CountingSink:
    """Takes every declaration, SYNC_CONCURRENCY at a time through a barrier, and counts the overlap."""

    def __init__(self) -> None:
        self.barrier = asyncio.Barrier(SYNC_CONCURRENCY)
        self.in_flight = self.most = 0
        self.declared: list[str] = []
        self.released: list[str] = []

    async def declare(self, declared: Declared, *, source: str, revision: str) -> str | None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await self.barrier.wait()
        finally:
            self.in_flight -= 1
        self.declared.append(declared.spec.room_id)
        return None

    async def release(self, room_id: str, *, source: str, prune: bool) -> None:
        await self.barrier.wait()
        self.released.append(room_id)

    async def failed(self, source: str, errors: list[str]) -> None:
        raise AssertionError(errors)


async def test_the_rooms_of_one_sync_are_offered_a_bounded_number_at_a_time(
    tmp_path: Path, store: Store
) -> None:
    folder = tmp_path / "specs"
    for index in range(ROOMS):
        write_spec(folder / f"r{index}.room.json", f"room-sync-{index:02d}")
    settings = SourceSettings(name="many", folder=folder)
    sink = CountingSink()
    syncer = Syncer(settings, FolderSource(folder), sink, store)
    async with asyncio.timeout(20):  # a serial loop waits at the barrier forever
        state = await syncer.sync()
    assert sorted(sink.declared) == sorted(state.rooms) == [f"room-sync-{i:02d}" for i in range(ROOMS)]
    assert sink.most == SYNC_CONCURRENCY
    assert state.errors == []
    for index in range(SYNC_CONCURRENCY):  # released together, too
        (folder / f"r{index}.room.json").unlink()
    async with asyncio.timeout(20):
        await syncer.sync()
    assert sorted(sink.released) == [f"room-sync-{i:02d}" for i in range(SYNC_CONCURRENCY)]
