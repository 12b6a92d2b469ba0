"""Keeping rooms as a source declares them: the `Syncer` of one source reads it (on a change it watches,
a webhook's `trigger()`, and every `interval_seconds`), offers each declared room to the service's one
acceptance path through a `Sink`, releases the rooms it no longer declares, and records what it fetched,
attempted and applied (`store/sources.py`) with its errors.

A file that fails validation declares nothing, and its rooms are not released: they keep their last good
revision. A source that cannot be read (a missing folder, a failed fetch, a branch that disappeared)
changes nothing in any room.

The rooms of one sync are offered (and released) `SYNC_CONCURRENCY` at a time, not one after the other:
a commit changing 100 rooms queues their runs in a fraction of the serial time, while the store and the
room server see a bounded number of acceptances at once. Each room is offered once per sync, so its own
revision order is the source's.

After a sync that exported a commit or moved the head (and after the first), under the same lock, so no
other sync of the source is in progress, a git source drops the exports no longer needed
(`GitSource.retain`): it keeps its newest fetched commit's and every one the store still refers to as a
seed folder (`store/sources.py`, `seed_folders_under`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from roomoperator.model.audit import utcnow
from roomoperator.settings import SourceSettings
from roomoperator.sources.folder import FolderSource
from roomoperator.sources.git import GitSource
from roomoperator.sources.scanning import Declared, Snapshot, SourceUnavailable
from roomoperator.store import Store
from roomoperator.store.sources import SourceState, save_source, seed_folders_under

log = structlog.get_logger(__name__)
T = TypeVar("T")
SYNC_CONCURRENCY = 8
"""Rooms of one sync offered to the acceptance (or released) at the same time."""


class Source(Protocol):
    kind: str

    async def fetch(self) -> Snapshot: ...


class Sink(Protocol):
    """What the service does with a source's rooms (the controller implements it)."""

    async def declare(self, declared: Declared, *, source: str, revision: str) -> str | None:
        """Offer the room's spec to the acceptance; the refusal's message, or None when it was taken (or
        is unchanged)."""
        ...

    async def release(self, room_id: str, *, source: str, prune: bool) -> None:
        """The source no longer declares the room: stop managing it (`prune`: remove the operator's own
        inventory first, under the guardrails)."""
        ...

    async def failed(self, source: str, errors: list[str]) -> None:
        """A sync of the source found new errors (audit, notifications)."""
        ...


def source_of(settings: SourceSettings, *, workdir: Path) -> FolderSource | GitSource:
    """The source `settings` describe; a git source keeps its mirror and exports under `workdir`."""
    if settings.folder is not None:
        return FolderSource(settings.folder, debounce_ms=settings.debounce_ms)
    assert settings.git is not None
    return GitSource(
        settings.git,
        branch=settings.branch,
        path=settings.path,
        workdir=workdir / settings.name,
        shown=settings.location.partition("#")[0],
    )


class Syncer:
    """One source kept in sync: `run()` forever, `sync()` once, `trigger()` soon."""

    def __init__(
        self,
        settings: SourceSettings,
        source: Source,
        sink: Sink,
        store: Store,
        *,
        state: SourceState | None = None,
        watch: Callable[[], AsyncIterator[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._source = source
        self._sink = sink
        self._store = store
        self._watch = watch
        self.state = state or SourceState(
            name=settings.name, kind=settings.kind, location=settings.location, updated_at=utcnow()
        )
        self._lock = asyncio.Lock()
        self._retained: tuple[int, str | None] | None = None
        """A git source's export count and head when its exports were last retained (None: not yet)."""
        self._wake = asyncio.Event()
        self._synced = asyncio.Condition()

    def trigger(self) -> None:
        """Sync again as soon as the current sync (if any) is over (a webhook, a file change)."""
        self._wake.set()

    async def run(self) -> None:
        watcher = asyncio.create_task(self._watching()) if self._watch is not None else None
        try:
            while True:
                self._wake.clear()
                try:
                    await self.sync()
                except Exception:  # a bug in one sync must not end the source's loop
                    log.exception("source sync raised", source=self.name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.interval_seconds)
        finally:
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

    async def _watching(self) -> None:
        assert self._watch is not None
        try:
            async for _ in self._watch():
                self._wake.set()
        except (OSError, RuntimeError) as exc:  # the folder vanished: the periodic rescan still runs
            log.warning("source watch stopped", source=self.name, error=str(exc))

    async def wait_for(self, predicate: Callable[[SourceState], bool]) -> SourceState:
        """The state once `predicate` holds for it (checked after each sync; bound it with a timeout)."""
        async with self._synced:
            await self._synced.wait_for(lambda: predicate(self.state))
            return self.state

    async def sync(self) -> SourceState:
        """Read the source once and bring every room it declares (and no longer declares) in line; then
        drop what the source keeps and no longer needs."""
        async with self._lock:
            try:
                await self._apply()
                source = self._source
                if isinstance(source, GitSource) and (source.exported, source.head) != self._retained:
                    await self._retain(source)
            finally:
                async with self._synced:
                    self._synced.notify_all()
            return self.state

    async def _apply(self) -> None:
        """One sync's reading and offering (its state recorded), under `sync`'s lock."""
        try:
            snapshot = await self._source.fetch()
        except SourceUnavailable as exc:
            await self._record(replace(self.state, errors=[{"message": str(exc)}], updated_at=utcnow()))
            return
        errors: list[dict[str, Any]] = [
            {"file": issue.source, "line": issue.line, "col": issue.col, "message": str(issue)}
            for issue in snapshot.issues
        ]
        rooms = {room_id: declared.file for room_id, declared in snapshot.rooms.items()}
        refusals = await _bounded(
            self._sink.declare(declared, source=self.name, revision=snapshot.revision)
            for declared in snapshot.rooms.values()
        )
        for (room_id, declared), refusal in zip(snapshot.rooms.items(), refusals, strict=True):
            if refusal is not None:
                errors.append({"file": declared.file, "roomId": room_id, "message": refusal})
        released = []
        for room_id, file in self.state.rooms.items():
            if room_id in rooms:
                continue
            if file in snapshot.failed:  # an invalid file: its rooms keep their last good revision
                rooms[room_id] = file
                continue
            released.append(room_id)
        await _bounded(
            self._sink.release(room_id, source=self.name, prune=self.settings.prune) for room_id in released
        )
        now = utcnow()
        applied = not errors
        await self._record(
            replace(
                self.state,
                fetched_revision=snapshot.revision,
                fetched_at=now,
                attempted_revision=snapshot.revision,
                applied_revision=snapshot.revision if applied else self.state.applied_revision,
                applied_at=now if applied else self.state.applied_at,
                errors=errors,
                rooms=rooms,
                updated_at=now,
            )
        )

    async def _retain(self, source: GitSource) -> None:
        """Remove the source's exports that neither its newest fetched commit nor the store needs. Skipped
        (by `sync`) while the source exported nothing and its head stayed: the store only ever refers to
        more folders, so nothing became removable but a folder an unfinished run alone held, which the
        next retention removes."""
        prefix = source.export_prefix()
        referred = await seed_folders_under(self._store, prefix)
        needed = {folder[len(prefix) :].split(os.sep, 1)[0] for folder in referred}
        needed.update(commit for commit in (source.head, self.state.fetched_revision) if commit)
        retained = source.exported, source.head
        removed = await source.retain(needed)
        self._retained = retained
        if removed:
            log.info("source exports removed", source=self.name, removed=removed, kept=len(needed))

    async def _record(self, state: SourceState) -> None:
        """Keep and store `state`; report errors that are new (one log line each)."""
        fresh = [error["message"] for error in state.errors if error not in self.state.errors]
        self.state = state
        await save_source(self._store, state)
        for message in fresh:
            log.warning(f"source {self.name}: {message}", source=self.name, revision=state.fetched_revision)
        if fresh:
            await self._sink.failed(self.name, fresh)


async def _bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await `calls` at most `SYNC_CONCURRENCY` at a time; their results in order (the first exception
    raised ends the sync, as a serial loop would)."""
    gate = asyncio.Semaphore(SYNC_CONCURRENCY)

    async def one(call: Awaitable[T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(one(call) for call in calls)))


def syncers(
    sources: list[SourceSettings],
    sink: Sink,
    store: Store,
    *,
    workdir: Path,
    states: dict[str, SourceState],
) -> list[Syncer]:
    """A `Syncer` for each configured source (with its stored state)."""
    made: list[Syncer] = []
    for settings in sources:
        source = source_of(settings, workdir=workdir)
        watch = source.changes if isinstance(source, FolderSource) else None
        made.append(Syncer(settings, source, sink, store, state=states.get(settings.name), watch=watch))
    return made
