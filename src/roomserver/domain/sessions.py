"""Live sessions: which entities hold a hub connection in which room right now (in memory, never stored).

One session binds one hub connection to one (room, entity). An entity may hold several sessions (the same
user on two devices: `docs/roomserver.md`, "The hub"); presence is their count. The room state reads
`connected` and `sessions` here; removing a declared entity over REST calls `close`, which forgets the
entity's sessions first (so their disconnect publishes nothing: the removal already said ENTITY.LEAVE),
then runs each session's close callback, which the hub registers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from roomserver.domain.entities import Entity

CloseSession = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Session:
    """A connection's membership of a room: the entity it speaks as, and the user who holds it."""

    connection_id: str
    room_id: str
    entity: Entity
    user_id: str | None
    declared: bool


class LiveSessions:
    """Sessions by connection and by (room, entity), with each session's close callback."""

    def __init__(self, *, changed: Callable[[str], None] | None = None) -> None:
        self._changed = changed  # told the room of each presence change (`connected`, `sessions`)
        self._by_connection: dict[str, Session] = {}
        self._rooms: dict[str, dict[str, dict[str, Session]]] = {}  # room -> entity -> connection -> session
        self._closers: dict[str, CloseSession] = {}

    def add(self, session: Session, close: CloseSession) -> bool:
        """Bind a connection (which holds no session); True when it is the entity's first in the room."""
        assert session.connection_id not in self._by_connection
        entities = self._rooms.setdefault(session.room_id, {})
        held = entities.setdefault(session.entity.id, {})
        held[session.connection_id] = session
        self._by_connection[session.connection_id] = session
        self._closers[session.connection_id] = close
        if self._changed is not None:
            self._changed(session.room_id)
        return len(held) == 1

    def remove(self, connection_id: str) -> tuple[Session, bool] | None:
        """Unbind a connection: its session and whether it was the entity's last; None when it held none."""
        session = self._by_connection.pop(connection_id, None)
        if session is None:
            return None
        self._closers.pop(connection_id, None)
        entities = self._rooms[session.room_id]
        held = entities[session.entity.id]
        del held[connection_id]
        last = not held
        if self._changed is not None:
            self._changed(session.room_id)
        if last:
            del entities[session.entity.id]
            if not entities:
                del self._rooms[session.room_id]
        return session, last

    def of_connection(self, connection_id: str) -> Session | None:
        return self._by_connection.get(connection_id)

    def holders(self, room_id: str, entity_id: str) -> list[Session]:
        """The entity's sessions in the room (several when it is connected more than once)."""
        return list(self._rooms.get(room_id, {}).get(entity_id, {}).values())

    def entity(self, room_id: str, entity_id: str) -> Session | None:
        """One session of the entity in the room (they all speak as the same entity), or None."""
        held = self._rooms.get(room_id, {}).get(entity_id)
        return next(iter(held.values())) if held else None

    def entities(self, room_id: str) -> list[Entity]:
        """The room's connected entities, each once, sorted by id."""
        entities = self._rooms.get(room_id, {})
        return [next(iter(entities[eid].values())).entity for eid in sorted(entities)]

    def connections(self, room_id: str) -> list[str]:
        """Every connection holding a session in the room (the room's group)."""
        return [cid for held in self._rooms.get(room_id, {}).values() for cid in held]

    def count(self, room_id: str, entity_id: str) -> int:
        return len(self._rooms.get(room_id, {}).get(entity_id, ()))

    def is_connected(self, room_id: str, entity_id: str) -> bool:
        return self.count(room_id, entity_id) > 0

    def state_entities(self, room_id: str, declared: list[tuple[str, str]]) -> str:
        """The room state's `entities` array body: each declared entity's JSON (without its closing brace's
        presence) with `connected`, `sessions` and `declared: true`, and every connected undeclared entity
        with `declared: false`, sorted by id."""
        rows = [(eid, body[:-1], True) for eid, body in declared]
        known = {eid for eid, _ in declared}
        for entity in self.entities(room_id):
            if entity.id not in known:
                rows.append((entity.id, json.dumps(entity.to_wire(), separators=(",", ":"))[:-1], False))
        rows.sort(key=lambda row: row[0])
        parts = []
        for eid, open_body, is_declared in rows:
            n = self.count(room_id, eid)
            presence = f'"connected":{"true" if n else "false"},"sessions":{n}'
            parts.append(f'{open_body},{presence},"declared":{"true" if is_declared else "false"}}}')
        return ",".join(parts)

    async def close(self, room_id: str, entity_id: str) -> None:
        """Close the entity's live sessions, if any (used when the entity is removed from the roster)."""
        closers = []
        for session in self.holders(room_id, entity_id):
            closers.append(self._closers.get(session.connection_id))
            self.remove(session.connection_id)
        for close in closers:
            if close is not None:
                await close()
