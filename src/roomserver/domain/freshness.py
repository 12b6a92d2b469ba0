"""Which rooms changed since their state was last read: a per-room change counter kept in memory, and the
last state `ETag` built for each room, so `GET /room/{roomId}/state` answers `304` from memory, without
reading the database or building the body, while nothing of the room changed.

The counter of a room moves (`changed`) after every commit that appended an event of the room (every
change of room data does: `storage/database.py` reports them) and on every presence change
(`domain/sessions.py`). A state read takes the room's `mark` *before* it reads the database and remembers
its `ETag` under that mark, with a digest of the `resources` it served (MCP provider states change outside
the database: they are compared on every read). A read whose `If-None-Match` names the remembered `ETag`
while the mark and the resources are unchanged is answered `304`. A change that lands during a read moves
the mark, so that read's `ETag` is never trusted for the newer state: the next read builds it again.
The body built with a remembered `ETag` is kept too, under the same rule, so a room read by many
clients (members polling its state) is read from the database and serialised once per change, not once
per request; the state is the same for every reader.
Memory: two small entries per room read or changed since the server started, and the most recently
built state bodies up to `BODY_BUDGET` bytes in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cachetools import LRUCache

BODY_BUDGET: Final = 32 * 1024 * 1024
"""Bytes of state bodies kept (the least recently used go first; a body larger than this is not kept)."""


@dataclass(frozen=True)
class _Tag:
    mark: int
    resources: bytes
    etag: str


class StateTags:
    """Per-room change marks (a global clock, so a mark never repeats) and the last state ETag of each."""

    def __init__(self) -> None:
        self._clock = 0
        self._marks: dict[str, int] = {}
        self._tags: dict[str, _Tag] = {}
        self._bodies: LRUCache[str, bytes] = LRUCache(BODY_BUDGET, getsizeof=len)
        """Room id -> the body built with its remembered ETag (set and dropped with it)."""

    def changed(self, room_id: str) -> None:
        """Something the room's state shows has changed (committed, or presence)."""
        self._clock += 1
        self._marks[room_id] = self._clock

    def mark(self, room_id: str) -> int:
        """The room's mark now (take it before reading the room)."""
        return self._marks.get(room_id, 0)

    def remember(self, room_id: str, mark: int, resources: bytes, etag: str, body: bytes) -> None:
        """The ETag and body of a state built after `mark` was taken, serving `resources` (a digest)."""
        self._tags[room_id] = _Tag(mark, resources, etag)
        self._bodies.pop(room_id, None)
        if len(body) <= BODY_BUDGET:
            self._bodies[room_id] = body

    def body(self, room_id: str, resources: bytes) -> tuple[str, bytes] | None:
        """The room's state ETag and body when both are known without reading the room, else None."""
        etag = self.current(room_id, resources)
        kept = None if etag is None else self._bodies.get(room_id)
        return None if etag is None or kept is None else (etag, kept)

    def current(self, room_id: str, resources: bytes) -> str | None:
        """The room's state ETag when it is known without reading the room, else None."""
        tag = self._tags.get(room_id)
        if tag is None or tag.mark != self.mark(room_id) or tag.resources != resources:
            return None
        return tag.etag
