"""The operator's HTTP API: the reference's endpoints (`/apply`, `/status`, `/health`, `/metrics`,
`/audit`, `/events`, `/mcp/*`) with their shapes, plus `/rooms`, `/rooms/{id}/history`, rollback (restore
a revision), reconcile, delete and `/runs/{correlationId}`. Reads are open; writes need the bearer token
when auth is on.

Routes get the parts they use through FastAPI `Depends` and use only the controller's public methods.
Each declares its answer (`response_model`, or `responses` for non-JSON bodies), and sends that model
as JSON; `/status` joins the rooms' ready-made JSON instead, in the declared shape.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel
from pydantic_core import to_json
from sse_starlette import EventSourceResponse, ServerSentEvent

from roomoperator.clients.errors import RoomServerError
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.model.audit import utcnow
from roomoperator.model.results import Phase
from roomoperator.service.auditing import AuditLog
from roomoperator.service.auth import Authenticator
from roomoperator.service.bodies import McpLoadRequest, read_apply
from roomoperator.service.controller import Controller
from roomoperator.service.errors import ApiError
from roomoperator.service.health import Health, HealthMonitor
from roomoperator.service.metrics import CONTENT_TYPE_LATEST, OperatorMetrics
from roomoperator.service.rooms import RoomView
from roomoperator.service.runs import RunRequest, Submission
from roomoperator.service.schemas import (
    ApplyAnswer,
    ApplyRefusal,
    AuditAnswer,
    HealthAnswer,
    History,
    HistoryItem,
    McpLoaded,
    McpStatus,
    NotFound,
    Queued,
    RollbackRequest,
    RoomDetail,
    RoomList,
    RoomStatus,
    RunAnswer,
    StatusAnswer,
    Unhealthy,
    Unmanaged,
    UpstreamFailed,
)
from roomoperator.settings import OperatorSettings

router = APIRouter()
TRUE_VALUES = {"true", "1", "yes"}
P = TypeVar("P")
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": NotFound}}
QUEUED: dict[int | str, dict[str, Any]] = {
    202: {"model": Queued, "description": "Queued behind the room's current run"}
}


def _part(name: str, kind: type[P]) -> Callable[[Request], Awaitable[P]]:
    """A dependency handing a route the part the app factory put on `app.state` under `name`.

    `async` so FastAPI calls it in the event loop (a plain function would cost a worker-thread hop per
    request and dependency: `GET /status` is polled).
    """

    async def get(request: Request) -> P:
        part = getattr(request.app.state, name)
        assert isinstance(part, kind), name
        return part

    return get


Operator = Annotated[Controller, Depends(_part("controller", Controller))]
Settings = Annotated[OperatorSettings, Depends(_part("settings", OperatorSettings))]
Audit = Annotated[AuditLog, Depends(_part("audit", AuditLog))]
Monitor = Annotated[HealthMonitor, Depends(_part("health", HealthMonitor))]
Metrics = Annotated[OperatorMetrics, Depends(_part("metrics", OperatorMetrics))]
Client = Annotated[RoomServerClient, Depends(_part("client", RoomServerClient))]


Auth = Annotated[Authenticator, Depends(_part("auth", Authenticator))]


async def _caller(request: Request, auth: Auth) -> str:
    """The authenticated caller of a mutating endpoint (checked before the body is read)."""
    return auth.caller(request)


Caller = Annotated[str, Depends(_caller)]


def reply(
    body: BaseModel,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    media_type: str | None = None,
) -> Response:
    """`body` as JSON, by alias (camelCase), UTC timestamps written `...Z` as the reference wrote them."""
    return Response(
        body.model_dump_json(by_alias=True),
        status_code=status,
        headers=headers,
        media_type=media_type or "application/json",
    )


def flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in TRUE_VALUES


def _queued(
    message: str, run: RunRequest, *, unchanged: bool = False, warnings: list[str] | None = None
) -> Response:
    """202 with the run's location and the revision it will apply."""
    location = f"/runs/{run.correlation_id}"
    body = Queued(
        message=message,
        correlation_id=run.correlation_id,
        location=location,
        revision=run.revision,
        unchanged=unchanged,
        warnings=warnings or [],
    )
    return reply(body, status=202, headers={"Location": location})


def _view(controller: Controller, room_id: str) -> RoomView:
    view = controller.room(room_id)
    if view is None:
        raise ApiError.not_found(f"Room {room_id} not found")
    return view


# /apply ------------------------------------------------------------------------------------------------


@router.post(
    "/apply",
    summary="Apply a RoomSpec (JSON or YAML), or a multipart form of the spec and its seed files",
    response_model=ApplyAnswer,
    responses={
        **QUEUED,
        400: {"model": ApplyRefusal, "description": "Refused spec or body; a failed run answers ApplyAnswer"},
        409: {
            "model": ApplyRefusal,
            "description": "SPEC_VERSION_REGRESSION: lower than the latest revision",
        },
        413: {"model": ApplyRefusal},
        415: {"model": ApplyRefusal},
    },
)
async def apply(
    request: Request,
    actor: Caller,
    controller: Operator,
    settings: Settings,
    x_dry_run: Annotated[str | None, Header()] = None,
    x_confirm: Annotated[str | None, Header()] = None,
    x_force: Annotated[str | None, Header()] = None,
) -> Response:
    body = await read_apply(request, settings=settings)
    spec, base_dir = body.spec, body.base_dir
    submission = await controller.apply(
        spec,
        base_dir=base_dir,
        confirm=flag(x_confirm),
        actor=actor,
        force=flag(x_force),
        dry_run=flag(x_dry_run),
    )
    return await _answer(submission)


async def _answer(submission: Submission) -> Response:
    """The answer to an accepted apply or restore: its run's result, or 202 when it waits (or was
    superseded while waiting), with the revision and the acceptance's warnings either way."""
    run = submission.request
    result = await asyncio.shield(run.done) if submission.started else None
    if result is None:
        return _queued(
            "Request queued", run, unchanged=submission.unchanged, warnings=list(submission.warnings)
        )
    finished = result.success or result.phase in (Phase.VERIFY, Phase.ROLLBACK)
    answer = ApplyAnswer.of(
        result, warnings=list(submission.warnings), revision=run.revision, unchanged=submission.unchanged
    )
    return reply(answer, status=200 if finished else 400)


# Status, health, metrics ---------------------------------------------------------------------------


@router.get("/status", summary="Operator and room status", response_model=StatusAnswer)
async def status(controller: Operator, settings: Settings, monitor: Monitor) -> Response:
    health = monitor.status
    # Assembled around the rooms' ready-made JSON (each re-serialised only after it changed).
    head = to_json({"version": settings.version, "health": int(health), "healthStatus": health.label})
    tail = to_json(
        {
            "queuedRequests": controller.queued_count,
            "activeReconciliations": controller.active_count,
            "timestamp": utcnow(),
        }
    )
    rooms = b",".join(view.status_bytes() for view in controller.rooms())
    body = b"".join((head[:-1], b',"rooms":[', rooms, b"],", tail[1:]))
    return Response(body, media_type="application/json")


@router.get(
    "/status/rooms/{roomId}", summary="Status of one room", response_model=RoomStatus, responses=NOT_FOUND
)
async def room_status(roomId: str, controller: Operator) -> Response:
    return Response(_view(controller, roomId).status_bytes(), media_type="application/json")


@router.get(
    "/health",
    summary="healthy, degraded or unhealthy (503)",
    response_model=HealthAnswer,
    responses={
        503: {
            "model": Unhealthy,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Unhealthy"}}},
        }
    },
)
async def health(monitor: Monitor) -> Response:
    state, now, checks = monitor.status, utcnow(), monitor.checks()
    if state is Health.UNHEALTHY:
        problem = Unhealthy(
            type="https://tools.ietf.org/html/rfc9110#section-15.6.4",
            title="Unhealthy",
            status=503,
            timestamp=now,
            checks=checks,
        )
        return reply(problem, status=503, media_type="application/problem+json")
    return reply(HealthAnswer(status=state.label, timestamp=now, checks=checks))


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(registry: Metrics) -> Response:
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


# Audit and events ----------------------------------------------------------------------------------


@router.get("/audit", summary="Audit entries, oldest first", response_model=AuditAnswer)
async def audit(
    log: Audit,
    count: Annotated[int, Query(le=10_000)] = 100,
    correlationId: str | None = None,
    roomId: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
) -> Response:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    entries = await log.entries(
        count=count, correlation_id=correlationId, room_id=roomId, action=action, since=since
    )
    return reply(AuditAnswer(entries=entries))


def _connected() -> str:
    stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    return json.dumps(
        {
            "type": "connected",
            "source": "roomoperator",
            "timestamp": stamp,
            "message": "Connected to RoomOperator events",
        },
        separators=(",", ":"),
    )


@router.get(
    "/events",
    summary="Audit entries as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "A `connected` event, then audit entries (JSON `data`), the recent ones first",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def events(log: Audit, settings: Settings) -> EventSourceResponse:
    async def stream() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data=_connected(), event="connected")
        async for entry in log.subscribe(replay=settings.store.audit_replay):
            data = entry.model_dump_json(by_alias=True)
            yield ServerSentEvent(data=data, event=entry.type, id=entry.correlation_id.strip() or None)

    return EventSourceResponse(
        stream(),
        ping=settings.events.heartbeat_interval_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# MCP (forwarded to the room server) ----------------------------------------------------------------


UPSTREAM: dict[int | str, dict[str, Any]] = {502: {"model": UpstreamFailed}}


def _upstream_problem(title: str, exc: RoomServerError) -> ApiError:
    problem = UpstreamFailed(
        type="https://tools.ietf.org/html/rfc9110#section-15.6.3", title=title, status=502, detail=str(exc)
    )
    return ApiError(502, problem.model_dump(mode="json", by_alias=True))


@router.post(
    "/mcp/load", summary="Load MCP providers on the room server", response_model=McpLoaded, responses=UPSTREAM
)
async def mcp_load(actor: Caller, client: Client, body: McpLoadRequest) -> Response:
    try:
        await client.mcp_load([provider.model_dump(exclude_none=True) for provider in body.providers])
    except RoomServerError as exc:
        raise _upstream_problem("Failed to load MCP providers", exc) from None
    return reply(McpLoaded(message="MCP providers loaded", count=len(body.providers)))


@router.get(
    "/mcp/status",
    summary="MCP providers as the room server sees them",
    response_model=McpStatus,
    responses=UPSTREAM,
)
async def mcp_status(client: Client) -> Response:
    try:
        answer = await client.mcp_status()
    except RoomServerError as exc:
        raise _upstream_problem("Failed to get MCP status", exc) from None
    return reply(McpStatus(enabled=answer.get("enabled", True), providers=answer.get("providers") or []))


# Rooms and runs ------------------------------------------------------------------------------------


@router.get("/rooms", summary="Every room the operator knows", response_model=RoomList)
async def rooms(controller: Operator) -> Response:
    views = sorted(controller.rooms(), key=lambda view: view.room_id)
    return reply(RoomList(items=[view.summary() for view in views]))


@router.get(
    "/rooms/{roomId}",
    summary="A room's desired spec, last run and conditions",
    response_model=RoomDetail,
    responses=NOT_FOUND,
)
async def room(roomId: str, controller: Operator) -> Response:
    return reply(_view(controller, roomId).detail())


@router.get(
    "/rooms/{roomId}/history",
    summary="Every spec version applied to a room",
    response_model=History,
    responses=NOT_FOUND,
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
)
async def rollback(
    roomId: str,
    body: RollbackRequest,
    actor: Caller,
    controller: Operator,
    dryRun: bool = False,
    x_dry_run: Annotated[str | None, Header()] = None,
    x_confirm: Annotated[str | None, Header()] = None,
) -> Response:
    submission = await controller.restore(
        roomId, body.revision, dry_run=dryRun or flag(x_dry_run), confirm=flag(x_confirm), actor=actor
    )
    return await _answer(submission)


@router.post(
    "/rooms/{roomId}/reconcile",
    summary="Reconcile a managed room now",
    status_code=202,
    response_model=Queued,
    responses=NOT_FOUND,
)
async def reconcile(roomId: str, actor: Caller, controller: Operator) -> Response:
    return _queued("Reconcile requested", await controller.reconcile_now(roomId, actor=actor))


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
)
async def run(correlationId: str, controller: Operator) -> Response:
    found = await controller.run(correlationId)
    if found is None:
        raise ApiError.not_found(f"Run {correlationId} not found")
    return reply(RunAnswer.model_validate(found, from_attributes=True))
