"""The operator endpoints (integration guide): room state, roster, policies, the room's manager, `whoami`.

The state read is conditional: it carries an `ETag` (the room's revision plus a digest of the whole
body, so presence and MCP provider changes, which are not room events, change it too) and answers
`304 Not Modified` without a body when `If-None-Match` names the current one: from memory, before this
router, while the room has not changed since the ETag was built (`api/conditional.py`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse

from roomcontract.actors import EVENT_ACTOR_FEATURE
from roomcontract.batch import BATCH_FEATURE
from roomcontract.fencing import FENCING_FEATURE
from roomserver.api.conditional import names, resources_of
from roomserver.api.dependencies import (
    ERRORS,
    Admin,
    Caller,
    EntityWriter,
    PolicyWriter,
    Reader,
    RoomId,
    Server,
)
from roomserver.api.schemas import (
    EntityBody,
    EntityOut,
    ManagerBody,
    ManagerOut,
    PoliciesBody,
    PoliciesOut,
    RoomStateOut,
    WhoamiOut,
)
from roomserver.domain.changes import entity_not_found
from roomserver.domain.entities import Entity
from roomserver.domain.identifiers import check_entity_id
from roomserver.errors import RoomServerError
from roomserver.server import RoomServer
from roomserver.storage import repository

router = APIRouter(tags=["operator"], responses=ERRORS)


FEATURES: Final = (BATCH_FEATURE, FENCING_FEATURE, EVENT_ACTOR_FEATURE)
"""What `GET /auth/whoami` announces beyond the reference contract (`POST /room/{roomId}/batch`)."""


@router.get("/room/{roomId}/state", responses={200: {"model": RoomStateOut}})
async def room_state(
    room_id: RoomId, server: Server, _: Reader, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    """The whole room in one read. An undeclared room answers an empty state with status `init`.

    A current `If-None-Match` of a room unchanged since its ETag was built is answered before this route,
    from memory (`api/conditional.py`); here the state is the one last built while the room is unchanged
    (`domain/freshness.py`), else read, and `304` answered when it still matches."""
    resources, digest = resources_of(server, room_id)
    tags = server.state_tags
    kept = tags.body(room_id, digest)
    etag, encoded = kept if kept is not None else await _built_state(server, room_id, resources, digest)
    if if_none_match is not None and names(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(encoded, media_type="application/json", headers={"ETag": etag})


async def _built_state(server: RoomServer, room_id: str, resources: str, digest: bytes) -> tuple[str, bytes]:
    """The room's state read from the database and serialised, and its ETag (both remembered)."""
    tags = server.state_tags
    mark = tags.mark(room_id)  # before the read: a change during it makes this read's ETag stale
    snapshot = await server.db.run(repository.read_state, room_id)
    entities = server.sessions.state_entities(room_id, snapshot.entities)  # + connected, sessions, declared
    # Assembled from the JSON text the database returns: no per-row objects on the hottest read.
    body = (
        f'{{"roomId":{json.dumps(room_id)},"status":"{snapshot.status}","revision":{snapshot.revision},'
        f'"entities":[{entities}],"artifacts":[{",".join(snapshot.artifacts)}],'
        f'"policies":{json.dumps(snapshot.policies.to_wire())},"resources":{resources},'
        f'"manager":{snapshot.manager or "null"}}}'
    )
    encoded = body.encode()
    etag = f'"{snapshot.revision}-{hashlib.blake2b(encoded, digest_size=8).hexdigest()}"'
    tags.remember(room_id, mark, digest, etag, encoded)
    return etag, encoded


def entity_answer(server: RoomServer, room_id: str, entity: Entity) -> dict[str, Any]:
    """The entity as `PUT /room/{roomId}/entities/{entityId}` answers it (and its batch item)."""
    return entity.to_wire(connected=server.sessions.is_connected(room_id, entity.id))


@router.post(
    "/room/{roomId}/join",
    status_code=201,
    responses={201: {"model": list[EntityOut]}, 409: {"description": "ENTITY_EXISTS (already declared)"}},
)
async def join(room_id: RoomId, body: EntityBody, server: Server, _: EntityWriter) -> JSONResponse:
    """Declare an entity; 409 `ENTITY_EXISTS` when its id is already declared (the operator's success)."""
    entity = body.entity(room_id)
    result = await server.db.run(repository.declare_entity, room_id, entity)
    if result is None:
        raise RoomServerError(
            409, f"entity {entity.id} is already declared in {room_id}", code="ENTITY_EXISTS"
        )
    roster, _events = result
    connected = server.sessions.is_connected
    return JSONResponse([e.to_wire(connected=connected(room_id, e.id)) for e in roster], status_code=201)


@router.put(
    "/room/{roomId}/entities/{entityId}",
    responses={200: {"model": EntityOut}, 201: {"model": EntityOut, "description": "declared by this call"}},
)
async def put_entity(
    room_id: RoomId, entityId: str, body: EntityBody, server: Server, _: EntityWriter
) -> JSONResponse:
    """Create or update a declared entity (200 also when unchanged, then without an event)."""
    check_entity_id(entityId)
    entity = body.entity(room_id, entityId)
    outcome, _events = await server.db.run(repository.put_entity, room_id, entity)
    return JSONResponse(
        entity_answer(server, room_id, entity), status_code=201 if outcome == "created" else 200
    )


@router.delete("/room/{roomId}/entities/{entityId}", status_code=204, response_class=Response)
async def remove_entity(room_id: RoomId, entityId: str, server: Server, _: EntityWriter) -> Response:
    """Remove a declared entity and close its live session; 404 `ENTITY_NOT_FOUND` when absent."""
    check_entity_id(entityId)
    events = await server.db.run(repository.remove_entity, room_id, entityId)
    if events is None:
        raise entity_not_found(room_id, entityId)
    await server.sessions.close(room_id, entityId)
    return Response(status_code=204)


@router.get("/rooms/{roomId}/policies", responses={200: {"model": PoliciesOut}})
async def get_policies(room_id: RoomId, server: Server, _: Reader) -> dict[str, Any]:
    """The room's policies, all three values (defaults until set)."""
    return (await server.db.run(repository.read_policies, room_id)).to_wire()


@router.put("/rooms/{roomId}/policies", responses={200: {"model": PoliciesOut}})
async def put_policies(
    room_id: RoomId, body: PoliciesBody, server: Server, _: PolicyWriter
) -> dict[str, Any]:
    """Set any subset of the policies; `POLICIES.UPDATED` only when a value changed."""
    policies, _events = await server.db.run(repository.update_policies, room_id, body.changes())
    return policies.to_wire()


@router.put("/rooms/{roomId}/manager", responses={200: {"model": ManagerOut}})
async def put_manager(room_id: RoomId, body: ManagerBody, server: Server, _: Admin) -> dict[str, Any]:
    """Record the operator that manages the room and whether the room is open to undeclared members
    (idempotent: the same values change nothing and keep `since`); `ROOM.MANAGER` only on a change.
    One-shot tools refuse a managed room."""
    manager, _events = await server.db.run(repository.set_manager, room_id, body.record())
    assert manager is not None
    return manager


@router.delete("/rooms/{roomId}/manager", status_code=204, response_class=Response)
async def delete_manager(room_id: RoomId, server: Server, _: Admin) -> Response:
    """No operator manages the room any more (204 also when none did)."""
    _released, _events = await server.db.run(repository.set_manager, room_id, None)
    return Response(status_code=204)


@router.get("/auth/whoami", response_model=WhoamiOut)
async def whoami(caller: Caller) -> dict[str, Any]:
    """The calling token's name and scopes (any valid token), and the server's optional `features`."""
    return {"name": caller.name, "scopes": sorted(caller.scopes), "features": list(FEATURES)}
