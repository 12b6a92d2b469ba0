"""The operator's HTTP API beyond the reference: `/rooms`, `/rooms/{id}` (detail, history, rollback to a
revision, reconcile now, stop managing) and `/runs/{correlationId}`. Reads need `operator:read`, writes
`operator:write`, when auth is on. Shared parts: `service/dependencies.py`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response

from roomoperator.service.dependencies import (
    NOT_FOUND,
    QUEUED,
    READ,
    Caller,
    Operator,
    Settings,
    answer,
    body_of,
    body_schema,
    flag,
    queued,
    reply,
    view_of,
)
from roomoperator.service.errors import ApiError
from roomoperator.service.reading import MAX_SMALL_BODY_BYTES
from roomoperator.service.schemas import (
    ApplyAnswer,
    ApplyRefusal,
    History,
    HistoryItem,
    PageCursor,
    PageLimit,
    Queued,
    RollbackRequest,
    RoomDetail,
    RoomList,
    RunAnswer,
    Unmanaged,
)

router = APIRouter()


# Rooms and runs ------------------------------------------------------------------------------------


@router.get(
    "/rooms", summary="The rooms the operator knows, a page", response_model=RoomList, dependencies=READ
)
async def rooms(
    controller: Operator, settings: Settings, cursor: PageCursor = None, limit: PageLimit = None
) -> Response:
    page = controller.rooms_page(after=cursor, limit=limit or settings.api.page_size)
    return reply(
        RoomList(
            items=[view.summary() for view in page.views], next_cursor=page.next_cursor, total=page.total
        )
    )


@router.get(
    "/rooms/{roomId}",
    summary="A room's desired spec, last run and conditions",
    response_model=RoomDetail,
    responses=NOT_FOUND,
    dependencies=READ,
)
async def room(roomId: str, controller: Operator) -> Response:
    return reply(view_of(controller, roomId).detail())


@router.get(
    "/rooms/{roomId}/history",
    summary="Every spec version applied to a room",
    response_model=History,
    responses=NOT_FOUND,
    dependencies=READ,
)
async def history(roomId: str, controller: Operator) -> Response:
    versions = await controller.history(roomId)
    if versions is None:
        raise ApiError.not_found(f"Room {roomId} not found")
    items = [HistoryItem.model_validate(version, from_attributes=True) for version in versions]
    return reply(History(room_id=roomId, items=items))


@router.post(
    "/rooms/{roomId}/rollback",
    summary="Restore a revision: its spec and seed folder applied again as a new revision",
    response_model=ApplyAnswer,
    responses={**QUEUED, 400: {"model": ApplyRefusal}, **NOT_FOUND},
    openapi_extra=body_schema(RollbackRequest),
)
async def rollback(
    roomId: str,
    body: Annotated[RollbackRequest, Depends(body_of(RollbackRequest, limit=MAX_SMALL_BODY_BYTES))],
    actor: Caller,
    controller: Operator,
    dryRun: bool = False,
    x_dry_run: Annotated[str | None, Header()] = None,
    x_confirm: Annotated[str | None, Header()] = None,
) -> Response:
    submission = await controller.restore(
        roomId, body.revision, dry_run=dryRun or flag(x_dry_run), confirm=flag(x_confirm), actor=actor
    )
    return await answer(submission)


@router.post(
    "/rooms/{roomId}/reconcile",
    summary="Reconcile a managed room now",
    status_code=202,
    response_model=Queued,
    responses=NOT_FOUND,
)
async def reconcile(roomId: str, actor: Caller, controller: Operator) -> Response:
    return queued("Reconcile requested", await controller.reconcile_now(roomId, actor=actor))


@router.delete(
    "/rooms/{roomId}",
    summary="Stop managing a room (removes nothing from it)",
    response_model=Unmanaged,
    responses=NOT_FOUND,
)
async def unmanage(roomId: str, actor: Caller, controller: Operator) -> Response:
    if not await controller.unmanage(roomId, actor=actor):
        raise ApiError.not_found(f"Room {roomId} not found")
    return reply(Unmanaged(room_id=roomId))


@router.get(
    "/runs/{correlationId}",
    summary="A run's status and result (queued runs too)",
    response_model=RunAnswer,
    responses=NOT_FOUND,
    dependencies=READ,
)
async def run(correlationId: str, controller: Operator) -> Response:
    found = await controller.run(correlationId)
    if found is None:
        raise ApiError.not_found(f"Run {correlationId} not found")
    return reply(RunAnswer.model_validate(found, from_attributes=True))
