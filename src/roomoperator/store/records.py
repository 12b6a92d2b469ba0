"""Plain immutable records the store hands out (no ORM objects escape the repository)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any, Literal

RunStatus = Literal["queued", "running", "succeeded", "failed", "superseded"]
RunTrigger = Literal["apply", "reconcile", "loop", "event"]


@dataclass(frozen=True)
class RoomRecord:
    """A room the operator knows, with its desired spec when it is managed."""

    room_id: str
    managed: bool
    spec: dict[str, Any] | None
    spec_version: int | None
    revision: int
    """The revision of the desired spec (0: none yet)."""
    latest_revision: int
    """The latest accepted revision, desired or not yet (0: none)."""
    base_dir: str | None
    confirmed: bool
    conditions: list[dict[str, Any]]
    cycles_since_converged: int
    last_reconcile: dt.datetime | None
    last_result: dict[str, Any] | None
    source: str | None = None
    """The GitOps source that owns the room."""
    pending_revision: int | None = None
    """The revision runs go towards while none of them got past the guardrails (None: the desired one)."""


@dataclass(frozen=True)
class SpecVersion:
    """One revision of a room: an accepted spec (`applied_at`: when it was accepted), the run that
    accepted it (`correlation_id`), its content `digest` and seed SHA-256s, the seed folder it resolved
    against, the revision it restored, and when it became the desired spec (None: superseded or refused
    before it got past the guardrails)."""

    room_id: str
    revision: int
    spec_version: int
    spec: dict[str, Any]
    actor: str | None
    correlation_id: str
    diff: dict[str, Any] | None
    applied_at: dt.datetime
    digest: str | None = None
    seeds: dict[str, Any] | None = None
    base_dir: str | None = None
    confirmed: bool = False
    restored_from: int | None = None
    desired_at: dt.datetime | None = None
    source: str | None = None
    source_revision: str | None = None
    """The GitOps source the spec came from (None: the API or `roomop up`) and its revision there."""


@dataclass(frozen=True)
class RunRecord:
    """One reconcile run; `spec` is None for runs of the stored desired spec."""

    correlation_id: str
    room_id: str
    trigger: RunTrigger
    status: RunStatus
    created_at: dt.datetime
    dry_run: bool = False
    confirm: bool = False
    actor: str | None = None
    spec: dict[str, Any] | None = None
    base_dir: str | None = None
    result: dict[str, Any] | None = None
    superseded_by: str | None = None
    revision: int | None = None
    superseded_by_revision: int | None = None
    finished_at: dt.datetime | None = field(default=None)


def column_values(record: Any) -> dict[str, Any]:
    """A record's fields as column values (shallow: `asdict` would deep-copy every spec and result)."""
    return {item.name: getattr(record, item.name) for item in fields(record)}
