"""Live sessions: which declared entities hold a hub connection right now (the hub issue fills this in).

The REST roster is durable; presence is not. `connected` on an entity comes from here, and removing a
declared entity closes its session through the callback the hub registers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

CloseSession = Callable[[], Awaitable[None]]


class LiveSessions:
    """(roomId, entityId) -> a callback that closes that entity's live connection."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], CloseSession] = {}

    def bind(self, room_id: str, entity_id: str, close: CloseSession) -> None:
        self._open[(room_id, entity_id)] = close

    def release(self, room_id: str, entity_id: str) -> None:
        self._open.pop((room_id, entity_id), None)

    def is_connected(self, room_id: str, entity_id: str) -> bool:
        return (room_id, entity_id) in self._open

    async def close(self, room_id: str, entity_id: str) -> None:
        """Close the entity's live session, if any (used when the entity is removed from the roster)."""
        close = self._open.pop((room_id, entity_id), None)
        if close is not None:
            await close()
