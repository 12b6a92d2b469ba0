"""The store's errors: `StoreError` (cannot open or migrate), `FencedError` (a room write refused because
this replica no longer holds the room's lease, `store/leases.py`)."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The store cannot be opened or migrated (bad URL, unreachable database)."""


class FencedError(StoreError):
    """A write for `room_id` was refused: this replica does not hold the room's live lease with the epoch
    it wrote with (another replica owns the room now). Never retried; the room is dropped locally."""

    def __init__(self, room_id: str, message: str) -> None:
        super().__init__(message)
        self.room_id = room_id
