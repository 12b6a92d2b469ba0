"""The operator's HTTP API, the reference's endpoints: `/apply`, `/status`, `/health`, `/metrics`,
`/audit`, `/events`, `/mcp/*`, with their shapes. When auth is on, reads need a token with `operator:read`
(`/health` and `/metrics` too unless `api.open_probes`), writes one with `operator:write`. Each route
declares its answer (`response_model`, or `responses` for non-JSON bodies); `/status` joins the rooms'
ready-made JSON instead, in the declared shape. Shared parts: `service/dependencies.py`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic_core import to_json
from sse_starlette import EventSourceResponse, ServerSentEvent

from roomoperator.clients.errors import RoomServerError
from roomoperator.model.audit import utcnow
from roomoperator.model.codes import ApiCode
from roomoperator.service.bodies import McpLoadRequest, read_apply
from roomoperator.service.dependencies import (
    NOT_FOUND,
    PROBE,
    QUEUED,
    READ,
    Audit,
    Caller,
    Client,
    Metrics,
    Monitor,
    Operator,
    Settings,
    answer,
    body_of,
    body_schema,
    flag,
    reply,
    view_of,
)
from roomoperator.service.errors import ApiError
from roomoperator.service.health import Health
from roomoperator.service.metrics import CONTENT_TYPE_LATEST
from roomoperator.service.reading import MAX_SMALL_BODY_BYTES
from roomoperator.service.schemas import (
    ApplyAnswer,
    ApplyRefusal,
    AuditAnswer,
    HealthAnswer,
    McpLoaded,
    McpStatus,
    PageCursor,
    PageLimit,
    RoomStatus,
    StatusAnswer,
    Unhealthy,
    UpstreamFailed,
)

router = APIRouter()


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
    x_expect_plan: Annotated[str | None, Header(pattern=r"^[0-9a-f]{64}$")] = None,
) -> Response:
    body = await read_apply(request, settings=settings)
    async with body.deciding():  # a refused apply keeps none of the seeds it brought
        submission = await controller.apply(
            body.spec,
            base_dir=body.base_dir,
            confirm=flag(x_confirm),
            actor=actor,
            force=flag(x_force),
            dry_run=flag(x_dry_run),
            expect=x_expect_plan,
            warnings=body.warnings,
        )
    return await answer(submission)


# Status, health, metrics ---------------------------------------------------------------------------


@router.get("/status", summary="Operator and room status", response_model=StatusAnswer, dependencies=READ)
async def status(
    controller: Operator,
    settings: Settings,
    monitor: Monitor,
    cursor: PageCursor = None,
    limit: PageLimit = None,
) -> Response:
    """The reference's shape, its `rooms` a page (room-id order; `nextCursor` continues it)."""
    health = monitor.status
    page = controller.rooms_page(after=cursor, limit=limit or settings.api.page_size)
    # Assembled around the rooms' ready-made JSON (each re-serialised only after it changed).
    head = to_json({"version": settings.version, "health": int(health), "healthStatus": health.label})
    tail = to_json(
        {
            "queuedRequests": controller.queued_count,
            "activeReconciliations": controller.active_count,
            "timestamp": utcnow(),
            "nextCursor": page.next_cursor,
            "totalRooms": page.total,
        }
    )
    rooms = b",".join(view.status_bytes() for view in page.views)
    body = b"".join((head[:-1], b',"rooms":[', rooms, b"],", tail[1:]))
    return Response(body, media_type="application/json")


@router.get(
    "/status/rooms/{roomId}",
    summary="Status of one room",
    response_model=RoomStatus,
    responses=NOT_FOUND,
    dependencies=READ,
)
async def room_status(roomId: str, controller: Operator) -> Response:
    return Response(view_of(controller, roomId).status_bytes(), media_type="application/json")


@router.get(
    "/health",
    summary="healthy, degraded or unhealthy (503)",
    response_model=HealthAnswer,
    dependencies=PROBE,
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
    dependencies=PROBE,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(registry: Metrics) -> Response:
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


# Audit and events ----------------------------------------------------------------------------------


@router.get("/audit", summary="Audit entries, oldest first", response_model=AuditAnswer, dependencies=READ)
async def audit(
    log: Audit,
    count: Annotated[int, Query(ge=0, le=10_000)] = 100,
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
    dependencies=READ,
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
    "/mcp/load",
    summary="Load MCP providers on the room server",
    response_model=McpLoaded,
    responses=UPSTREAM,
    openapi_extra=body_schema(McpLoadRequest),
)
async def mcp_load(
    client: Client,
    body: Annotated[McpLoadRequest, Depends(body_of(McpLoadRequest, limit=MAX_SMALL_BODY_BYTES))],
) -> Response:
    try:
        await client.mcp_load([provider.model_dump(exclude_none=True) for provider in body.providers])
    except RoomServerError as exc:
        if exc.status == 400:  # the room server refused the providers as sent: the caller's to fix, not a 502
            message = f"providers: refused by the room server: {exc.message}"
            raise ApiError.e1(400, "BadRequest", ApiCode.INVALID_BODY, message) from None
        raise _upstream_problem("Failed to load MCP providers", exc) from None
    return reply(McpLoaded(message="MCP providers loaded", count=len(body.providers)))


@router.get(
    "/mcp/status",
    summary="MCP providers as the room server sees them",
    response_model=McpStatus,
    responses=UPSTREAM,
    dependencies=READ,
)
async def mcp_status(client: Client) -> Response:
    try:
        answer = await client.mcp_status()
    except RoomServerError as exc:
        raise _upstream_problem("Failed to get MCP status", exc) from None
    return reply(McpStatus(enabled=answer.get("enabled", True), providers=answer.get("providers") or []))
