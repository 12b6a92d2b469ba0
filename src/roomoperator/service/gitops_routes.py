"""The GitOps routes: `GET /sources` (each source, its last fetched, attempted and applied revisions as
Flux shows them, its rooms, its errors; `operator:read`), `POST /hooks/git` (a push webhook from GitHub,
Gitea or GitLab, authenticated by a git source's shared secret instead of an API token, which syncs the
sources it signs for at once) and `GET /notifications/deliveries` (the notifications' delivery log;
`operator:read`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from roomoperator.service.dependencies import NOT_FOUND, READ, Operator, reply
from roomoperator.service.errors import ApiError
from roomoperator.service.reading import read_body
from roomoperator.service.schemas import NotFound, Schema
from roomoperator.sources.syncing import Syncer
from roomoperator.sources.webhooks import pushed_branch, signed
from roomoperator.store import Store
from roomoperator.store.outbox import deliveries

MAX_HOOK_BODY_BYTES = 5 * 1024 * 1024
"""Largest push payload read (GitHub caps its own at 25 MB; a push of many commits is well under 5)."""

router = APIRouter()


class SourceCondition(Schema):
    type: Literal["Ready"] = "Ready"
    status: Literal["True", "False"]
    reason: str
    message: str = ""


class SourceView(Schema):
    """One source as `GET /sources` shows it."""

    name: str
    kind: str
    location: str
    prune: bool
    allow_overrides: bool
    last_fetched_revision: str | None
    last_fetched_at: dt.datetime | None
    last_attempted_revision: str | None
    last_applied_revision: str | None
    last_applied_at: dt.datetime | None
    rooms: dict[str, str]
    """Room id -> the file that declares it."""
    overridden: list[str]
    """Rooms whose latest revision is an override from elsewhere (drift from the source)."""
    errors: list[dict[str, Any]]
    conditions: list[SourceCondition]


class SourceList(Schema):
    items: list[SourceView]


class HookAnswer(Schema):
    triggered: list[str]
    """The sources that sync now (none for a ping or a push to another branch)."""
    branch: str | None


def syncers_of(request: Request) -> list[Syncer]:
    syncers: list[Syncer] = getattr(request.app.state, "sources", [])
    return syncers


def _ready(syncer: Syncer) -> SourceCondition:
    state = syncer.state
    if state.fetched_revision is None and not state.errors:
        return SourceCondition(status="False", reason="Progressing", message="not synced yet")
    if state.errors:
        if any("file" not in error for error in state.errors):
            reason = "SyncFailed"  # the source could not be read
        elif any("roomId" in error for error in state.errors):
            reason = "Refused"  # the acceptance refused a spec (another owner, the version rule)
        else:
            reason = "SpecInvalid"
        return SourceCondition(status="False", reason=reason, message=str(state.errors[0].get("message", "")))
    return SourceCondition(status="True", reason="Succeeded", message=f"applied {state.applied_revision}")


def view_of(syncer: Syncer, overridden: list[str]) -> SourceView:
    state, settings = syncer.state, syncer.settings
    return SourceView(
        name=state.name,
        kind=settings.kind,
        location=settings.location,
        prune=settings.prune,
        allow_overrides=settings.allow_overrides,
        last_fetched_revision=state.fetched_revision,
        last_fetched_at=state.fetched_at,
        last_attempted_revision=state.attempted_revision,
        last_applied_revision=state.applied_revision,
        last_applied_at=state.applied_at,
        rooms=state.rooms,
        overridden=overridden,
        errors=state.errors,
        conditions=[_ready(syncer)],
    )


@router.get(
    "/sources", summary="Every GitOps source and its revisions", response_model=SourceList, dependencies=READ
)
async def sources(request: Request, controller: Operator) -> Response:
    items = [view_of(syncer, controller.sources.overridden(syncer.name)) for syncer in syncers_of(request)]
    return reply(SourceList(items=items))


@router.post(
    "/hooks/git",
    summary="A git push webhook (GitHub, Gitea, GitLab): sync the sources it is signed for",
    response_model=HookAnswer,
    status_code=202,
    responses={
        401: {"model": NotFound, "description": "No git source's secret signs the request"},
        **NOT_FOUND,
    },
)
async def git_hook(request: Request, source: str | None = None) -> Response:
    """Authenticated by a git source's `webhook_secret` (the body's HMAC-SHA256, or GitLab's token); the
    `source` query parameter narrows the sources tried to one."""
    candidates = [
        syncer
        for syncer in syncers_of(request)
        if syncer.settings.kind == "git"
        and syncer.settings.webhook_secret is not None
        and source in (None, syncer.name)
    ]
    if not candidates:
        raise ApiError(
            404, {"error": "no git source with a webhook secret" + (f" named {source}" if source else "")}
        )
    body = await read_body(request, limit=MAX_HOOK_BODY_BYTES)
    headers = dict(request.headers)
    verified = [
        syncer
        for syncer in candidates
        if syncer.settings.webhook_secret is not None
        and signed(headers, body, syncer.settings.webhook_secret.get_secret_value())
    ]
    if not verified:
        raise ApiError(401, {"error": "the webhook signature does not match any git source's secret"})
    branch = pushed_branch(body)
    triggered = [syncer for syncer in verified if branch == syncer.settings.branch]
    for syncer in triggered:
        syncer.trigger()
    return reply(HookAnswer(triggered=[syncer.name for syncer in triggered], branch=branch), status=202)


class AttemptView(Schema):
    attempt: int
    at: dt.datetime
    status_code: int | None
    error: str | None


class DeliveryView(Schema):
    """One notification for one target: its idempotency key (`id`), its state and every attempt."""

    id: str
    target: str
    kind: str
    room_id: str | None
    status: str
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    history: list[AttemptView]


class DeliveryList(Schema):
    items: list[DeliveryView]


@router.get(
    "/notifications/deliveries",
    summary="The newest webhook notifications and their delivery attempts",
    response_model=DeliveryList,
    dependencies=READ,
)
async def notification_deliveries(
    request: Request,
    count: Annotated[int, Query(ge=1, le=1000)] = 100,
    status: Literal["pending", "delivered", "failed"] | None = None,
    roomId: str | None = None,
) -> Response:
    store: Store = request.app.state.store
    found = await deliveries(store, limit=count, status=status, room_id=roomId)
    items = [
        DeliveryView(
            id=delivery.item.id,
            target=delivery.item.target,
            kind=delivery.item.kind,
            room_id=delivery.item.room_id or None,
            status=delivery.item.status,
            attempts=delivery.item.attempts,
            created_at=delivery.item.created_at,
            next_attempt_at=delivery.item.next_attempt_at if delivery.item.status == "pending" else None,
            delivered_at=delivery.item.delivered_at,
            last_status=delivery.item.last_status,
            last_error=delivery.item.last_error,
            history=[
                AttemptView(attempt=a.attempt, at=a.at, status_code=a.status_code, error=a.error)
                for a in delivery.attempts
            ],
        )
        for delivery in found
    ]
    return reply(DeliveryList(items=items))
