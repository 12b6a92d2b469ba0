"""Which entities of an open room the operator joined itself: what a prune may remove from it.

In a `membership: open` room anyone with a token may join, so an entity the spec stops declaring is not
the operator's to kick by default (`planning/planner.py`). A prune (`service/sourcing.py`) names the
entities the room's spec declared; of those, the operator's are the ones whose latest `ENTITY.JOIN` in the
room's event log was made by the operator's own token (a server with `events.actor.v1` names each
event's actor, `roomcontract.actors`). The log is replayed from its start up to the room's revision
(`engine/settling.room_log`). A server without actors, or a log that cannot be read, makes none of them
the operator's, and the run says why.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from roomcontract.actors import ACTOR_KEY, EVENT_ACTOR_FEATURE
from roomoperator.clients.errors import RoomServerError
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.settling import Event, room_log
from roomoperator.model.observed import ObservedRoom

NO_ACTORS = (
    "The room server does not name the actors of its events ({feature}): who joined the entities of open"
    " room {room_id} is unknown, so none is removed ({names})"
)
NO_LOG = (
    "The event log of room {room_id} could not be read{why}: who joined its entities is unknown, so none"
    " is removed ({names})"
)


@dataclass(frozen=True)
class Release:
    """The entities to remove although the room is open, or why none is (`warning`)."""

    entities: frozenset[str] = frozenset()
    warning: str | None = None


def joined_by(log: list[Event], actor: str, candidates: Collection[str]) -> frozenset[str]:
    """The `candidates` whose latest `ENTITY.JOIN` in `log` (oldest first) was made by `actor`."""
    latest: dict[str, object] = {}
    for event in log:
        payload = event.get("payload") or {}
        if payload.get("kind") != "ENTITY.JOIN":
            continue
        entity = (payload.get("data") or {}).get("entity") or {}
        if entity.get("id") in candidates:
            latest[entity["id"]] = event.get(ACTOR_KEY)
    return frozenset(entity for entity, by in latest.items() if by == actor)


async def operators_entities(
    client: RoomServerClient, observed: ObservedRoom, candidates: Collection[str], *, patience: float
) -> Release:
    """Of `candidates` in the room `observed` (just read), the ones the operator's token joined last,
    from the room's event log (given `patience` seconds to replay)."""
    present = sorted({e.id for e in observed.entities} & set(candidates))
    if not present:
        return Release()
    room_id, names = observed.room_id, ", ".join(present)
    try:
        if EVENT_ACTOR_FEATURE not in await client.features():
            return Release(
                warning=NO_ACTORS.format(feature=EVENT_ACTOR_FEATURE, room_id=room_id, names=names)
            )
        own = (await client.whoami()).name
    except RoomServerError as exc:
        return Release(warning=NO_LOG.format(room_id=room_id, why=f" ({exc})", names=names))
    log = await room_log(
        client, room_id, since=0, until=observed.revision, patience=patience, with_actor=True
    )
    if log is None:
        return Release(warning=NO_LOG.format(room_id=room_id, why="", names=names))
    return Release(joined_by(log, own, present))
