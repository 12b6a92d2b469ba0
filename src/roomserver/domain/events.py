"""Room events: the kinds and the reference's RoomEvent envelope (framed as Server-Sent Events by
`api/events.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from roomcontract.actors import ACTOR_KEY

ENTITY_JOIN: Final = "ENTITY.JOIN"
ENTITY_UPDATED: Final = "ENTITY.UPDATED"
ENTITY_LEAVE: Final = "ENTITY.LEAVE"
ARTIFACT_ADDED: Final = "ARTIFACT.ADDED"
ARTIFACT_UPDATED: Final = "ARTIFACT.UPDATED"
ARTIFACT_PROMOTED: Final = "ARTIFACT.PROMOTED"
ARTIFACT_DELETED: Final = "ARTIFACT.DELETED"
POLICIES_UPDATED: Final = "POLICIES.UPDATED"
ROOM_STATE: Final = "ROOM.STATE"
ROOM_MANAGER: Final = "ROOM.MANAGER"
RESOURCE_CALLED: Final = "RESOURCE.CALLED"
RESOURCE_RESULT: Final = "RESOURCE.RESULT"
MESSAGE: Final = "MESSAGE"
"""A hub room message (MessageModel as `data`): the client event `message`, SSE `event: message`."""


@dataclass(frozen=True)
class PendingEvent:
    """An event a change produces, before the store gives it its sequence number."""

    kind: str
    data: dict[str, Any]


@dataclass(frozen=True)
class RoomEvent:
    """A stored event: `seq` is global and increasing, and is the SSE `id:`."""

    seq: int
    room_id: str
    ts: str
    kind: str
    data: dict[str, Any]
    actor: str | None = None
    """Who made it: the member of `X-Entity-Id` or the hub session's entity, else the token's name (None
    for an event logged before actors were kept, or by the server itself)."""

    def envelope(self, *, with_actor: bool = False) -> dict[str, Any]:
        """The reference RoomEvent envelope (hub `event` argument, SSE `data`); a hub message's is the
        reference's SSE message item, `{"id", "roomId", "ts", "type": "message", "payload": MessageModel}`.
        `with_actor` adds `"actor"` (`GET /events?withActor=1`); the reference shape has none."""
        if self.kind == MESSAGE:
            document: dict[str, Any] = {
                "id": str(self.seq),
                "roomId": self.room_id,
                "ts": self.ts,
                "type": "message",
                "payload": self.data,
            }
        else:
            document = {
                "id": str(self.seq),
                "roomId": self.room_id,
                "ts": self.ts,
                "type": "event",
                "payload": {"kind": self.kind, "data": self.data},
            }
        if with_actor:
            document[ACTOR_KEY] = self.actor
        return document


def artifact_written(name: str, version: int, sha256: str) -> PendingEvent:
    """ARTIFACT.ADDED for a first version, ARTIFACT.UPDATED after (the reference's rule)."""
    kind = ARTIFACT_ADDED if version == 1 else ARTIFACT_UPDATED
    return PendingEvent(kind, {"name": name, "version": version, "sha256": sha256})
