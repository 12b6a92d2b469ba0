"""The operator's HTTP API: the reference's endpoints (`/apply`, `/status`, `/health`, `/metrics`,
`/audit`, `/events`, `/mcp/*`) with their shapes, plus `/rooms`, `/rooms/{id}/history`, reconcile,
delete and `/runs/{correlationId}`. Reads are open; writes need the bearer token when auth is on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from pydantic_core import to_json
from sse_starlette import EventSourceResponse, ServerSentEvent

from roomoperator.clients.errors import RoomServerError
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.model.audit import utcnow
from roomoperator.model.results import Phase, RunResult
from roomoperator.service.auditing import AuditLog
from roomoperator.service.auth import Authenticator
from roomoperator.service.controller import Controller, RoomView
from roomoperator.service.errors import ApiError
from roomoperator.service.health import Health, HealthMonitor
from roomoperator.service.metrics import CONTENT_TYPE_LATEST, OperatorMetrics
from roomoperator.settings import OperatorSettings
from roomoperator.spec.errors import SpecError
from roomoperator.spec.loading import load_data, load_text
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.parsing import MAX_DOCUMENT_BYTES
from roomoperator.spec.upgrade import check_upgrade
from roomoperator.store import RunRecord, Store

router = APIRouter()
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
TRUE_VALUES = {"true", "1", "yes"}
SPEC_KEYS = {"apiVersion", "kind", "metadata"}
APPLY_FIELDS = {
    "success",
    "partialSuccess",
    "correlationId",
    "phase",
    "diff",
    "warnings",
    "errors",
    "duration",
}


def reply(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None, media_type: str | None = None
) -> Response:
    """A JSON response with UTC timestamps written `...Z`, as the reference wrote them."""
    return Response(
        to_json(body), status_code=status, headers=headers, media_type=media_type or "application/json"
    )


def flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in TRUE_VALUES


class _Parts:
    """Typed access to what the app factory put on `app.state`."""

    def __init__(self, request: Request) -> None:
        state = request.app.state
        self.settings: OperatorSettings = state.settings
        self.controller: Controller = state.controller
        self.store: Store = state.store
        self.audit: AuditLog = state.audit
        self.client: RoomServerClient = state.client
        self.health: HealthMonitor = state.health
        self.metrics: OperatorMetrics = state.metrics


def _caller(request: Request) -> str:
    """The authenticated caller of a mutating endpoint (checked before the body is read)."""
    auth: Authenticator = request.app.state.auth
    return auth.caller(request)


Caller = Annotated[str, Depends(_caller)]


def _error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": message})


# /apply ------------------------------------------------------------------------------------------------


async def read_spec(request: Request, parts: _Parts) -> RoomSpec:
    """The RoomSpec of an `/apply` body: JSON `{"spec": ...}`, a bare JSON RoomSpec, or YAML."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ApiError(
                413, {"errors": [f"body: larger than {MAX_DOCUMENT_BYTES} bytes"], "code": "BODY_TOO_LARGE"}
            )
    if not raw.strip():
        raise ApiError.apply("INVALID_BODY", ["body: a RoomSpec is required"])
    # Parsing and validating a large spec is CPU work: keep it off the event loop.
    return await anyio.to_thread.run_sync(parse_spec, bytes(raw), media, parts.controller.seed_root)


def parse_spec(raw: bytes, media: str, base_dir: Path) -> RoomSpec:
    """Decode, parse and validate one `/apply` body; every failure is an `ApiError` naming the problem."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError.apply("INVALID_BODY", [f"body: not UTF-8 text (byte {exc.start})"]) from None
    try:
        if media in YAML_TYPES:
            loaded = load_text(text, source="<request>", base_dir=base_dir)
            if len(loaded) != 1:
                raise ApiError.apply(
                    "INVALID_BODY", [f"body: one RoomSpec document expected, got {len(loaded)}"]
                )
            return loaded[0].spec
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(
                415,
                {"errors": [f"Content-Type: {media} is not JSON or YAML"], "code": "UNSUPPORTED_MEDIA_TYPE"},
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError.apply(
                "INVALID_BODY", [f"body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"]
            ) from None
        except RecursionError:
            raise ApiError.apply("INVALID_BODY", ["body: JSON nested too deeply"]) from None
        if isinstance(data, dict) and "spec" in data and not SPEC_KEYS & data.keys():
            data = data["spec"]
            if data is None:
                raise ApiError.apply("INVALID_SPEC", ["spec: a RoomSpec is required"])
        return load_data(data, source="<request>", base_dir=base_dir)
    except SpecError as exc:
        raise ApiError.apply(
            "INVALID_SPEC",
            [f"{issue.path or 'spec'}: {issue.message}" for issue in exc.issues],
            issues=[issue.to_json() for issue in exc.issues],
        ) from None


def apply_body(result: RunResult) -> dict[str, Any]:
    body = result.model_dump(mode="json", by_alias=True)
    return {
        **{key: body[key] for key in body if key in APPLY_FIELDS},
        "code": result.code,
        "converged": result.converged,
    }


@router.post("/apply", summary="Apply a RoomSpec (JSON or YAML)")
async def apply(
    request: Request,
    actor: Caller,
    x_dry_run: Annotated[str | None, Header()] = None,
    x_confirm: Annotated[str | None, Header()] = None,
) -> Response:
    parts = _Parts(request)
    spec = await read_spec(request, parts)
    view = parts.controller.rooms.get(spec.room_id)
    warnings: list[str] = []
    if view is not None and view.managed and view.spec is not None:
        report = check_upgrade(view.spec, spec)
        if not report.ok:
            raise ApiError.apply("SPEC_UPGRADE_REJECTED", report.errors)
        warnings = report.warnings
    if flag(x_dry_run):
        result = await parts.controller.dry_run(spec, confirm=flag(x_confirm), actor=actor)
    else:
        run, started = await parts.controller.apply(spec, confirm=flag(x_confirm), actor=actor)
        outcome = await asyncio.shield(run.done) if started else None
        if outcome is None:
            location = f"/runs/{run.correlation_id}"
            return reply(
                {"message": "Request queued", "correlationId": run.correlation_id, "location": location},
                status=202,
                headers={"Location": location},
            )
        result = outcome
    body = apply_body(result)
    body["warnings"] = warnings + body["warnings"]
    finished = result.success or result.phase in (Phase.VERIFY, Phase.ROLLBACK)
    return reply(body, status=200 if finished else 400)


# Status, health, metrics ---------------------------------------------------------------------------


@router.get("/status", summary="Operator and room status")
async def status(request: Request) -> Response:
    parts = _Parts(request)
    health = parts.health.status
    # Assembled around the rooms' ready-made JSON (each re-serialised only after it changed).
    head = to_json({"version": parts.settings.version, "health": int(health), "healthStatus": health.label})
    tail = to_json(
        {
            "queuedRequests": parts.controller.queue.queued,
            "activeReconciliations": parts.controller.queue.active,
            "timestamp": utcnow(),
        }
    )
    rooms = b",".join(view.status_bytes() for view in parts.controller.rooms.values())
    body = b"".join((head[:-1], b',"rooms":[', rooms, b"],", tail[1:]))
    return Response(body, media_type="application/json")


def _view(parts: _Parts, room_id: str) -> RoomView:
    view = parts.controller.rooms.get(room_id)
    if view is None:
        raise _error(404, f"Room {room_id} not found")
    return view


@router.get("/status/rooms/{roomId}", summary="Status of one room")
async def room_status(request: Request, roomId: str) -> Response:
    return Response(_view(_Parts(request), roomId).status_bytes(), media_type="application/json")


@router.get("/health", summary="healthy, degraded or unhealthy (503)")
async def health(request: Request) -> Response:
    monitor = _Parts(request).health
    state = monitor.status
    body = {"status": state.label, "timestamp": utcnow(), "checks": monitor.checks()}
    if state is Health.UNHEALTHY:
        problem = {
            "type": "https://tools.ietf.org/html/rfc9110#section-15.6.4",
            "title": "Unhealthy",
            "status": 503,
            "timestamp": body["timestamp"],
            "checks": body["checks"],
        }
        return reply(problem, status=503, media_type="application/problem+json")
    return reply(body)


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(_Parts(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


# Audit and events ----------------------------------------------------------------------------------


@router.get("/audit", summary="Audit entries, oldest first")
async def audit(
    request: Request,
    count: Annotated[int, Query(le=10_000)] = 100,
    correlationId: str | None = None,
    roomId: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
) -> Response:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    entries = await _Parts(request).store.audit(
        count=count, correlation_id=correlationId, room_id=roomId, action=action, since=since
    )
    return reply({"entries": [entry.model_dump(mode="json", by_alias=True) for entry in entries]})


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


@router.get("/events", summary="Audit entries as Server-Sent Events")
async def events(request: Request) -> EventSourceResponse:
    parts = _Parts(request)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data=_connected(), event="connected")
        async for entry in parts.audit.subscribe(replay=parts.settings.store.audit_replay):
            data = entry.model_dump_json(by_alias=True)
            yield ServerSentEvent(data=data, event=entry.type, id=entry.correlation_id.strip() or None)

    return EventSourceResponse(
        stream(),
        ping=parts.settings.events.heartbeat_interval_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# MCP (forwarded to the room server) ----------------------------------------------------------------


class McpProvider(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    url: str
    visibility: str | None = None


class McpLoadRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    providers: list[McpProvider]


def _upstream_problem(title: str, exc: RoomServerError) -> ApiError:
    return ApiError(
        502,
        {
            "type": "https://tools.ietf.org/html/rfc9110#section-15.6.3",
            "title": title,
            "status": 502,
            "detail": str(exc),
        },
    )


@router.post("/mcp/load", summary="Load MCP providers on the room server")
async def mcp_load(request: Request, actor: Caller, body: McpLoadRequest) -> Response:
    parts = _Parts(request)
    try:
        await parts.client.mcp_load([provider.model_dump(exclude_none=True) for provider in body.providers])
    except RoomServerError as exc:
        raise _upstream_problem("Failed to load MCP providers", exc) from None
    return reply({"message": "MCP providers loaded", "count": len(body.providers)})


@router.get("/mcp/status", summary="MCP providers as the room server sees them")
async def mcp_status(request: Request) -> Response:
    try:
        answer = await _Parts(request).client.mcp_status()
    except RoomServerError as exc:
        raise _upstream_problem("Failed to get MCP status", exc) from None
    return reply({"enabled": answer.get("enabled", True), "providers": answer.get("providers") or []})


# Rooms and runs ------------------------------------------------------------------------------------


def _room_json(view: RoomView) -> dict[str, Any]:
    return {
        "roomId": view.room_id,
        "managed": view.managed,
        "specVersion": view.spec.metadata.version if view.spec else None,
        "revision": view.revision,
        "conditions": view.conditions,
        "status": view.status_json(),
    }


@router.get("/rooms", summary="Every room the operator knows")
async def rooms(request: Request) -> Response:
    views = sorted(_Parts(request).controller.rooms.values(), key=lambda view: view.room_id)
    return reply({"items": [_room_json(view) for view in views]})


@router.get("/rooms/{roomId}", summary="A room's desired spec, last run and conditions")
async def room(request: Request, roomId: str) -> Response:
    view = _view(_Parts(request), roomId)
    return reply(
        _room_json(view)
        | {
            "spec": view.spec.to_wire() if view.spec else None,
            "seedRoot": str(view.base_dir) if view.base_dir else None,
            "lastRun": view.last_result,
        }
    )


@router.get("/rooms/{roomId}/history", summary="Every spec version applied to a room")
async def history(request: Request, roomId: str) -> Response:
    parts = _Parts(request)
    _view(parts, roomId)
    items = [
        {
            "revision": version.revision,
            "specVersion": version.spec_version,
            "actor": version.actor,
            "appliedAt": version.applied_at,
            "correlationId": version.correlation_id,
            "diff": version.diff,
            "spec": version.spec,
        }
        for version in await parts.store.history(roomId)
    ]
    return reply({"roomId": roomId, "items": items})


@router.post("/rooms/{roomId}/reconcile", summary="Reconcile a managed room now")
async def reconcile(request: Request, roomId: str, actor: Caller) -> Response:
    parts = _Parts(request)
    run = await parts.controller.reconcile_now(roomId, actor=actor)
    if run is None:
        raise _error(404, f"Room {roomId} not found")
    location = f"/runs/{run.correlation_id}"
    return reply(
        {"message": "Reconcile requested", "correlationId": run.correlation_id, "location": location},
        status=202,
        headers={"Location": location},
    )


@router.delete("/rooms/{roomId}", summary="Stop managing a room (removes nothing from it)")
async def unmanage(request: Request, roomId: str, actor: Caller) -> Response:
    parts = _Parts(request)
    if not await parts.controller.unmanage(roomId, actor=actor):
        raise _error(404, f"Room {roomId} not found")
    return reply({"roomId": roomId, "managed": False})


def _run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "correlationId": run.correlation_id,
        "roomId": run.room_id,
        "trigger": run.trigger,
        "status": run.status,
        "dryRun": run.dry_run,
        "confirm": run.confirm,
        "actor": run.actor,
        "createdAt": run.created_at,
        "finishedAt": run.finished_at,
        "supersededBy": run.superseded_by,
        "result": run.result,
    }


@router.get("/runs/{correlationId}", summary="A run's status and result (queued runs too)")
async def run(request: Request, correlationId: str) -> Response:
    found = await _Parts(request).store.get_run(correlationId)
    if found is None:
        raise _error(404, f"Run {correlationId} not found")
    return reply(_run_json(found))
