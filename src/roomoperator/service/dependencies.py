"""What the operator's routes share: the parts they get through FastAPI `Depends` (the controller, the
settings, the audit log, ...), the authenticated caller (writers) and the scope checks of reads, JSON
bodies read after authentication, and how answers are written (JSON by alias, 202 with the run's
location, the answer to an accepted apply or restore).

Routes use only the controller's public methods; `service/routes.py` holds the reference's endpoints,
`service/room_routes.py` the rooms, history, restore and runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel

from roomcontract.scopes import OPERATOR_READ, OPERATOR_WRITE
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.model.results import Phase
from roomoperator.service.auditing import AuditLog
from roomoperator.service.auth import ANONYMOUS, Authenticator
from roomoperator.service.controller import Controller
from roomoperator.service.errors import ApiError
from roomoperator.service.health import HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.reading import inline_schema, read_model
from roomoperator.service.rooms import RoomView
from roomoperator.service.runs import RunRequest, Submission
from roomoperator.service.schemas import ApplyAnswer, NotFound, Queued
from roomoperator.settings import OperatorSettings

TRUE_VALUES = {"true", "1", "yes"}
P = TypeVar("P")
B = TypeVar("B", bound=BaseModel)
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


async def caller_of(request: Request, auth: Auth) -> str:
    """The caller of a mutating endpoint, with `operator:write` (checked before any body is read)."""
    return auth.caller(request, scope=OPERATOR_WRITE)


async def reader_of(request: Request, auth: Auth) -> str:
    """The caller of a read, with `operator:read`."""
    return auth.caller(request, scope=OPERATOR_READ)


async def prober_of(request: Request, auth: Auth) -> str:
    """The caller of `/health` and `/metrics`: anyone while `api.open_probes` is on, else a reader."""
    return ANONYMOUS if auth.open_probes else auth.caller(request, scope=OPERATOR_READ)


Caller = Annotated[str, Depends(caller_of)]
READ = [Depends(reader_of)]
"""`dependencies=` of every read route."""
PROBE = [Depends(prober_of)]
"""`dependencies=` of `/health` and `/metrics`."""


def body_of(model: type[B], *, limit: int) -> Callable[[Request, str], Awaitable[B]]:
    """A dependency giving a route its JSON body as `model` (keys matched case-insensitively), read only
    after the caller is authenticated (it depends on `Caller`) and never beyond `limit` bytes."""

    async def read(request: Request, actor: Caller) -> B:
        return await read_model(request, model, limit=limit)

    return read


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` documenting a JSON request body that the route reads itself (through `body_of`)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(model)}},
        }
    }


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


def queued(
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


def view_of(controller: Controller, room_id: str) -> RoomView:
    view = controller.room(room_id)
    if view is None:
        raise ApiError.not_found(f"Room {room_id} not found")
    return view


async def answer(submission: Submission) -> Response:
    """The answer to an accepted apply or restore: its run's result, or 202 when it waits (or was
    superseded while waiting), with the revision and the acceptance's warnings either way."""
    run = submission.request
    result = await asyncio.shield(run.done) if submission.started else None
    if result is None:
        return queued(
            "Request queued", run, unchanged=submission.unchanged, warnings=list(submission.warnings)
        )
    finished = result.success or result.phase in (Phase.VERIFY, Phase.ROLLBACK)
    answer = ApplyAnswer.of(
        result, warnings=list(submission.warnings), revision=run.revision, unchanged=submission.unchanged
    )
    return reply(answer, status=200 if finished else 400)
