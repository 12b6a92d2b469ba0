"""Group commit for the store's frequent writes: the items queued while a commit is in flight share the
next transaction, so a thousand rooms writing at once cost a few commits, not a thousand.

The store uses one `GroupCommit` per kind of write: the audit journal with the intents of writes
(`Store.record`, `intend`, `settle`), accepted revisions (`Store.accept_revision`) and the runs'
bookkeeping (`store/batching.py`). A caller awaits its own item: it returns that item's result once the
transaction holding it is committed, or raises that item's error (a commit that failed as a whole raises
its error to every item in it). Items with the same `key` (a room) never share a transaction: the later
one waits for the next, so each commit sees at most one write of a room and applies them in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Commit = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]
"""Write `items` in one transaction: each item's result, or the error to raise to its caller alone."""


class GroupCommit(Generic[T, R]):
    """A queue of items that `commit` writes in shared transactions, one at a time."""

    def __init__(self, commit: Commit[T, R], *, key: Callable[[T], Hashable] | None = None) -> None:
        self._commit = commit
        self._key = key
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue `item`; its result once committed (or its error)."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await done

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next transaction's items: all queued ones, but only the first of each key."""
        queue, self._queue = self._queue, []
        if self._key is None:
            return queue
        batch: list[tuple[T, asyncio.Future[R]]] = []
        later: list[tuple[T, asyncio.Future[R]]] = []
        keys: set[Hashable] = set()
        for queued in queue:
            key = self._key(queued[0])
            (later if key in keys else batch).append(queued)
            keys.add(key)
        self._queue = later
        return batch

    async def _flush(self) -> None:
        while self._queue:
            batch = [(item, done) for item, done in self._take() if not done.cancelled()]
            if not batch:
                continue
            try:
                results = await self._commit([item for item, _ in batch])
            except Exception as exc:  # the database's error (or a bug): never leave a caller waiting
                for _, done in batch:
                    if not done.done():  # its caller may have been cancelled (shutdown) meanwhile
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(batch, results, strict=True):
                if done.done():
                    continue
                if isinstance(result, Exception):
                    done.set_exception(result)
                else:
                    done.set_result(result)
