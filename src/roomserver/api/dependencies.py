"""Request dependencies: the server, the caller's token and scope, a valid room id (and the request's fence),
the member identity (the token's name or the member is the actor of the request's writes).

Every dependency is `async def`: none of them blocks, and FastAPI runs a plain `def` one on a worker
thread, a thread hop per dependency per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from roomcontract.fencing import FENCE_HEADER, parse_fence
from roomcontract.scopes import Scope
from roomserver.api.schemas import ErrorOut
from roomserver.auth import Principal
from roomserver.domain.entities import Entity
from roomserver.domain.identifiers import ENTITY_ID, check_room_id
from roomserver.errors import RoomServerError
from roomserver.server import RoomServer
from roomserver.storage import actors, fencing, repository

_bearer = HTTPBearer(
    auto_error=False, description="Token from the tokens file (`roomserver serve --tokens`)."
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "invalid input"),
        (401, "no valid token"),
        (403, "missing scope or permission"),
    )
}


async def get_server(request: Request) -> RoomServer:
    server: RoomServer = request.app.state.roomserver
    return server


Server = Annotated[RoomServer, Depends(get_server)]


@dataclass(frozen=True)
class RequireScope:
    """The dependency that authorises a route: a valid token holding `scope` (None: any valid token, for
    a route that checks scopes itself, such as the batch's per item).

    `api.guard` finds it in a route's dependencies to authorise a request before reading its body.
    """

    scope: Scope | None

    async def __call__(
        self,
        request: Request,
        server: Server,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = server.tokens.authenticate(request.headers.get("authorization"))
        if self.scope is not None:
            principal.require(self.scope)
        actors.authenticated(principal.name)  # the events of the request's writes are by it
        return principal


@dataclass(frozen=True)
class UploadBody:
    """Marks a route whose body is an artifact upload: `api.guard` allows it `max_upload_body_bytes`
    (every other route gets `max_body_bytes`) and lets it pause up to `body_timeout_seconds` per chunk."""

    async def __call__(self) -> None:
        return None


UPLOAD_BODY: Final = Depends(UploadBody())


@dataclass(frozen=True)
class BatchBody:
    """Marks the batch route: `api.guard` allows it `max_batch_body_bytes`."""

    async def __call__(self) -> None:
        return None


BATCH_BODY: Final = Depends(BatchBody())


def _scoped(scope: Scope | None) -> Any:
    return Depends(RequireScope(scope))


Caller = Annotated[Principal, _scoped(None)]
Reader = Annotated[Principal, _scoped("room:read")]
EntityWriter = Annotated[Principal, _scoped("room:entities:write")]
ArtifactWriter = Annotated[Principal, _scoped("room:artifacts:write")]
PolicyWriter = Annotated[Principal, _scoped("room:policies:write")]
Admin = Annotated[Principal, _scoped("room:admin")]


async def _room_id(
    room_id: Annotated[str, Path(alias="roomId")],
    fence: Annotated[
        str | None,
        Header(
            alias=FENCE_HEADER,
            description="An operator replica's lease epoch for this room: its writes are refused with 409 "
            "`FENCED` once a higher epoch has been seen for the room (`docs/contract.md`, Fencing).",
        ),
    ] = None,
) -> str:
    """The path's room id, checked; the request's writes are fenced when it carries `X-RoomOp-Fence`."""
    room_id = check_room_id(room_id)
    if fence is not None:
        try:
            fencing.fence(room_id, parse_fence(fence))
        except ValueError as exc:
            raise RoomServerError(400, str(exc), code="INVALID_REQUEST") from None
    return room_id


RoomId = Annotated[str, Depends(_room_id)]


async def _member(
    server: Server, room_id: RoomId, x_entity_id: Annotated[str | None, Header()] = None
) -> Entity | None:
    """The member named by `X-Entity-Id`: a *declared* entity of the room (no hub yet: docs/roomserver.md).

    None when the header is absent: the caller then acts as a service (its token's scopes decide).
    """
    if x_entity_id is None:
        return None
    if not x_entity_id.strip():
        raise RoomServerError(401, "X-Entity-Id header is required", code="AUTH_REQUIRED")
    entity = None
    if ENTITY_ID.fullmatch(x_entity_id):
        entity = await server.db.run(repository.get_entity, room_id, x_entity_id)
    if entity is None:
        raise RoomServerError(403, "entity is not declared in this room", code="PERM_DENIED")
    actors.member(entity.id)  # the member, not the token, made the request's writes
    return entity


Member = Annotated[Entity | None, Depends(_member)]
