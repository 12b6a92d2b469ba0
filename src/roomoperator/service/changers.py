"""Who changed each room since its last run, as the room server's event log says: what a drift
notification names (`changedBy`, `observing.NotificationObserver`).

The event follower (`clients/events.py`) reports each event's actor (none for the operator's own writes,
nor from a server that does not keep actors); the controller hands the actors of events that are news to
the room's runs here. A finished run takes the actors of the events up to its last state read (the ones
it saw and corrected); later ones stay for the next run. Memory is bounded: `MAX_ACTORS` distinct actors
per room (the most recent), and only rooms with changes no run has taken yet (an unmanaged room's are
dropped).
"""

from __future__ import annotations

from typing import Final

MAX_ACTORS: Final = 10
"""Most actors kept per room (the most recent ones): a notification names people, not a crowd."""


class Changers:
    """Per room: each actor seen since the room's last run, with the id of its newest event."""

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, int | None]] = {}

    def seen(self, room_id: str, actor: str, seq: int | None) -> None:
        """`actor` made event `seq` (None: an event without an id) in `room_id`."""
        actors = self._rooms.setdefault(room_id, {})
        actors.pop(actor, None)  # re-inserted: the order is by each actor's latest change
        actors[actor] = seq
        while len(actors) > MAX_ACTORS:
            del actors[next(iter(actors))]

    def take(self, room_id: str, *, read_at: int | None) -> tuple[str, ...]:
        """The actors of the room's events up to `read_at` (a run's last state read; None: every one),
        least recent first; they are forgotten, actors of later events stay."""
        actors = self._rooms.get(room_id)
        if not actors:
            return ()
        taken = tuple(a for a, seq in actors.items() if read_at is None or seq is None or seq <= read_at)
        for actor in taken:
            del actors[actor]
        if not actors:
            del self._rooms[room_id]
        return taken

    def forget(self, room_id: str) -> None:
        """The room is no longer managed here."""
        self._rooms.pop(room_id, None)
