"""Plain immutable records the store hands out (no ORM objects escape the repository)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
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
    base_dir: str | None
    confirmed: bool
    conditions: list[dict[str, Any]]
    cycles_since_converged: int
    last_reconcile: dt.datetime | None
    last_result: dict[str, Any] | None


@dataclass(frozen=True)
class SpecVersion:
    """One entry of a room's spec history."""

    room_id: str
    revision: int
    spec_version: int
    spec: dict[str, Any]
    actor: str | None
    correlation_id: str
    diff: dict[str, Any] | None
    applied_at: dt.datetime


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
    finished_at: dt.datetime | None = field(default=None)
