"""The operator API's answers as pydantic models: routes build them and send them, and FastAPI puts them in
`/openapi.json`, so the documented shape is the shape on the wire.

Keys are camelCase and in the reference system's order (`/apply`, `/status` and the room status follow
its wire shapes); fields the reference never had come after its own.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from roomoperator.model.audit import AuditEntry
from roomoperator.model.codes import ApiCode, RunCode
from roomoperator.model.results import Phase, ReconcileDiff, RunResult
from roomoperator.spec.models import MAX_INT
from roomoperator.store.records import RunStatus, RunTrigger

ConditionStatus = Literal["True", "False"]

MAX_PAGE_SIZE = 1000
"""The largest `limit` of a page of rooms."""
PageCursor = Annotated[
    str | None,
    Query(
        max_length=256,
        description="`nextCursor` of the previous page: the rooms after it (room-id order); none: the first",
    ),
]
PageLimit = Annotated[
    int | None,
    Query(ge=1, le=MAX_PAGE_SIZE, description="rooms in the page (default `api.page_size`, 100)"),
]


class Schema(BaseModel):
    """A wire model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ConditionType(StrEnum):
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class Condition(Schema):
    """One Kubernetes-style condition of a room; `last_transition_time` moves only when `status` flips."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: dt.datetime


class RoomStatus(Schema):
    """The reference `RoomStatus` fields in their order, then the operator's own."""

    room_id: str
    current_phase: str | None
    is_reconciling: bool
    pending_diff: ReconcileDiff | None
    blocked: list[str]
    last_reconcile: dt.datetime | None
    cycles_since_converged: int
    managed: bool
    spec_version: int | None
    revision: int
    conditions: tuple[Condition, ...]
    pending_revision: int | None = Field(
        default=None,
        description="an accepted revision the room's runs go towards but none got past the guardrails"
        " with yet (they could not read or reach the room); `revision` is still the older desired one",
    )
    owner: str | None = Field(
        default=None, description="the replica that owns the room (null: a single operator, or no owner now)"
    )


class StatusAnswer(Schema):
    """`GET /status`: the operator's health and every room's status."""

    version: str
    health: int = Field(description="0 healthy, 1 degraded, 2 unhealthy")
    health_status: str
    rooms: list[RoomStatus]
    queued_requests: int
    active_reconciliations: int
    timestamp: dt.datetime
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page of rooms; null: this is the last"
    )
    total_rooms: int = Field(default=0, description="rooms the operator knows, on every page")


class ApplyAnswer(Schema):
    """`POST /apply` (and `/rooms/{id}/rollback`) after the run (or the dry run) finished: the reference
    body, then `code`, `converged`, the `revision` run (None: a dry run of a spec that is no revision) and
    whether the spec was `unchanged` (identical to the room's latest revision: no new revision)."""

    success: bool
    partial_success: bool
    correlation_id: str
    phase: Phase
    diff: ReconcileDiff | None
    warnings: list[str]
    errors: list[str]
    duration: float
    code: RunCode | None
    converged: bool | None
    revision: int | None
    unchanged: bool

    @classmethod
    def of(
        cls, result: RunResult, *, warnings: list[str], revision: int | None, unchanged: bool
    ) -> ApplyAnswer:
        """The answer for `result`, with the acceptance `warnings` before the run's own."""
        own = {"warnings", "revision", "unchanged"}
        fields = {name: getattr(result, name) for name in cls.model_fields if name not in own}
        return cls(**fields, warnings=[*warnings, *result.warnings], revision=revision, unchanged=unchanged)


class Queued(Schema):
    """202: the run is accepted and will run after the room's current one; poll `location`."""

    message: str
    correlation_id: str
    location: str
    revision: int | None = None
    unchanged: bool = False
    warnings: list[str] = Field(default_factory=list)


class ApplyRefusal(Schema):
    """400/409/413/415 of `/apply`: the reference's error body plus a machine-readable `code`; a version
    refusal names the versions compared and the room's revision kept."""

    errors: list[str]
    warnings: list[str]
    code: ApiCode | RunCode
    issues: list[dict[str, Any]] | None = None
    offered_version: int | None = None
    current_version: int | None = None
    current_revision: int | None = None


class NotFound(Schema):
    error: str


class Problem(Schema):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int


class Unhealthy(Problem):
    """`GET /health` when the operator is unhealthy (503)."""

    timestamp: dt.datetime
    checks: dict[str, Any]


class UpstreamFailed(Problem):
    """`/mcp/*` when the room server fails (502)."""

    detail: str


class HealthAnswer(Schema):
    status: str
    timestamp: dt.datetime
    checks: dict[str, Any]


class AuditAnswer(Schema):
    entries: list[AuditEntry]


class McpLoaded(Schema):
    message: str
    count: int


class McpStatus(Schema):
    enabled: bool
    providers: list[dict[str, Any]]


class RoomSummary(Schema):
    """One item of `GET /rooms`."""

    room_id: str
    managed: bool
    spec_version: int | None
    revision: int
    conditions: tuple[Condition, ...]
    status: RoomStatus
    owner: str | None = Field(default=None, description="the replica that owns the room (as in `status`)")


class RoomDetail(RoomSummary):
    """`GET /rooms/{roomId}`: the summary, the desired spec and the last run's result."""

    spec: dict[str, Any] | None
    seed_root: str | None
    last_run: RunResult | None
    latest_revision: int = Field(description="the latest accepted revision (desired, queued or refused)")


class RoomList(Schema):
    """`GET /rooms`: a page of rooms in room-id order."""

    items: list[RoomSummary]
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the next page; null: this is the last"
    )
    total: int = Field(default=0, description="rooms the operator knows")


class HistoryItem(Schema):
    """One revision: `appliedAt` is when it was accepted, `desiredAt` when its run got past the
    guardrails (None: superseded or refused first), `restoredFrom` the revision it restored, `seeds` the
    SHA-256 of each seed file it resolved (None: not readable)."""

    revision: int
    spec_version: int
    actor: str | None
    applied_at: dt.datetime
    correlation_id: str
    diff: dict[str, Any] | None
    spec: dict[str, Any]
    desired_at: dt.datetime | None
    restored_from: int | None
    seeds: dict[str, Any] | None


class History(Schema):
    room_id: str
    items: list[HistoryItem]


class Unmanaged(Schema):
    room_id: str
    managed: Literal[False] = False


class RunAnswer(Schema):
    """`GET /runs/{correlationId}`: a run from the store, queued, running or finished."""

    correlation_id: str
    room_id: str
    trigger: RunTrigger
    status: RunStatus
    dry_run: bool
    confirm: bool
    actor: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    superseded_by: str | None
    result: dict[str, Any] | None
    revision: int | None = Field(description="the revision the run applies (None: a dry run of a new spec)")
    superseded_by_revision: int | None


class RollbackRequest(Schema):
    """`POST /rooms/{roomId}/rollback`: the revision to restore."""

    model_config = ConfigDict(extra="forbid")

    revision: int = Field(ge=1, le=MAX_INT)
