"""The operator endpoints (integration guide): room state, roster, policies, the room's manager, `whoami`.

The state read is conditional: it carries an `ETag` (the room's revision plus a digest of the whole
body, so presence and MCP provider changes, which are not room events, change it too) and answers
`304 Not Modified` without a body when `If-None-Match` names the current one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse

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
from roomserver.domain.identifiers import check_entity_id
from roomserver.errors import RoomServerError, bad_request
from roomserver.storage import repository

router = APIRouter(tags=["operator"], responses=ERRORS)


def _check_body_room(body: EntityBody, room_id: str) -> None:
    if body.roomId is not None and body.roomId != room_id:
        raise bad_request("INVALID_ENTITY_SPEC", "roomId in the body must equal the roomId of the path")


@router.get("/room/{roomId}/state", responses={200: {"model": RoomStateOut}})
async def room_state(
    room_id: RoomId, server: Server, _: Reader, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    """The whole room in one read. An undeclared room answers an empty state with status `init`."""
    snapshot = await server.db.run(repository.read_state, room_id)
    entities = server.sessions.state_entities(room_id, snapshot.entities)  # + connected, sessions, declared
    # Assembled from the JSON text the database returns: no per-row objects on the hottest read.
    body = (
        f'{{"roomId":{json.dumps(room_id)},"status":"{snapshot.status}","revision":{snapshot.revision},'
        f'"entities":[{entities}],"artifacts":[{",".join(snapshot.artifacts)}],'
        f'"policies":{json.dumps(snapshot.policies.to_wire())},"resources":{json.dumps(server.providers.resources())},'
        f'"manager":{snapshot.manager or "null"}}}'
    )
    encoded = body.encode()
    etag = f'"{snapshot.revision}-{hashlib.blake2b(encoded, digest_size=8).hexdigest()}"'
    if if_none_match is not None and etag in (t.strip().removeprefix("W/") for t in if_none_match.split(",")):
        return Response(status_code=304, headers={"ETag": etag})
    return Response(encoded, media_type="application/json", headers={"ETag": etag})


@router.post(
    "/room/{roomId}/join",
    status_code=201,
    responses={201: {"model": list[EntityOut]}, 409: {"description": "ENTITY_EXISTS (already declared)"}},
)
async def join(room_id: RoomId, body: EntityBody, server: Server, _: EntityWriter) -> JSONResponse:
    """Declare an entity; 409 `ENTITY_EXISTS` when its id is already declared (the operator's success)."""
    _check_body_room(body, room_id)
    if body.entityId is None:
        raise bad_request("INVALID_ENTITY_SPEC", "entityId is required")
    entity = body.to_entity(body.entityId)
    result = await server.db.run(repository.declare_entity, room_id, entity)
    if result is None:
        raise RoomServerError(
            409, f"entity {entity.id} is already declared in {room_id}", code="ENTITY_EXISTS"
        )
    roster, events = result
    server.publish(events)
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
    _check_body_room(body, room_id)
    if body.entityId is not None and body.entityId != entityId:
        raise bad_request("INVALID_ENTITY_SPEC", "entityId in the body must equal the entityId of the path")
    entity = body.to_entity(entityId)
    outcome, events = await server.db.run(repository.put_entity, room_id, entity)
    server.publish(events)
    wire = entity.to_wire(connected=server.sessions.is_connected(room_id, entity.id))
    return JSONResponse(wire, status_code=201 if outcome == "created" else 200)


@router.delete("/room/{roomId}/entities/{entityId}", status_code=204, response_class=Response)
async def remove_entity(room_id: RoomId, entityId: str, server: Server, _: EntityWriter) -> Response:
    """Remove a declared entity and close its live session; 404 `ENTITY_NOT_FOUND` when absent."""
    check_entity_id(entityId)
    events = await server.db.run(repository.remove_entity, room_id, entityId)
    if events is None:
        raise RoomServerError(404, f"entity {entityId} is not declared in {room_id}", code="ENTITY_NOT_FOUND")
    await server.sessions.close(room_id, entityId)
    server.publish(events)
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
    changes = {
        "dm_visibility_default": body.dmVisibilityDefault,
        "allow_resource_creation": body.allowResourceCreation,
        "max_artifacts_per_entity": body.maxArtifactsPerEntity,
    }
    policies, events = await server.db.run(repository.update_policies, room_id, changes)
    server.publish(events)
    return policies.to_wire()


@router.put("/rooms/{roomId}/manager", responses={200: {"model": ManagerOut}})
async def put_manager(room_id: RoomId, body: ManagerBody, server: Server, _: Admin) -> dict[str, Any]:
    """Record the operator that manages the room and whether the room is open to undeclared members
    (idempotent: the same values change nothing and keep `since`); `ROOM.MANAGER` only on a change.
    One-shot tools refuse a managed room."""
    manager, events = await server.db.run(
        repository.set_manager, room_id, {"name": body.name, "url": body.url, "membership": body.membership}
    )
    server.publish(events)
    assert manager is not None
    return manager


@router.delete("/rooms/{roomId}/manager", status_code=204, response_class=Response)
async def delete_manager(room_id: RoomId, server: Server, _: Admin) -> Response:
    """No operator manages the room any more (204 also when none did)."""
    _released, events = await server.db.run(repository.set_manager, room_id, None)
    server.publish(events)
    return Response(status_code=204)


@router.get("/auth/whoami", response_model=WhoamiOut)
async def whoami(caller: Caller) -> dict[str, Any]:
    """The calling token's name and scopes (any valid token)."""
    return {"name": caller.name, "scopes": sorted(caller.scopes)}
