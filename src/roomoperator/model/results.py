"""The outcome of one reconcile run, shared by the engine (which fills it) and the service (which stores
and serves it). Its JSON form is the reference `/apply` body (`success, partialSuccess, correlationId,
phase, diff, warnings, errors, duration`) plus fields the reference never had.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from roomoperator.model.codes import RunCode


class Phase(StrEnum):
    PLANNING = "PLANNING"
    PRE_CHECKS = "PRE_CHECKS"
    APPLY = "APPLY"
    VERIFY = "VERIFY"
    ROLLBACK = "ROLLBACK"


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ReconcileDiff(WireModel):
    """The reference's eight diff lists, derived from the plan (but true: see planning), then ours.

    `toEnsure` keeps the reference's meaning (every declared entity present on both sides, in spec
    order); the entities whose declared fields differ are `toUpdate`, the MCP providers to load `toLoad`.
    """

    to_join: list[str] = Field(default_factory=list)
    to_kick: list[str] = Field(default_factory=list)
    to_ensure: list[str] = Field(default_factory=list)
    to_seed: list[str] = Field(default_factory=list)
    to_promote: list[str] = Field(default_factory=list)
    to_apply: list[str] = Field(default_factory=list)
    to_delete_artifacts: list[str] = Field(default_factory=list)
    blocked: list[str] = Field(default_factory=list)
    to_update: list[str] = Field(default_factory=list)
    to_load: list[str] = Field(default_factory=list)


class ItemFailure(WireModel):
    """One change that APPLY could not make, and why."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    op: str
    target: str
    message: str
    attempts: int = 1


class RunResult(WireModel):
    """Everything one reconcile run did; `code` is machine-readable when the run was refused or failed.

    Built once when the run ends (the engine keeps a draft while it runs) and frozen from then on.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    success: bool
    partial_success: bool = False
    correlation_id: str
    room_id: str
    spec_version: int
    phase: Phase
    dry_run: bool = False
    diff: ReconcileDiff | None = None
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    code: RunCode | None = None
    duration: float = 0.0
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    plan: dict[str, Any] | None = None
    applied: tuple[str, ...] = ()
    failed: tuple[ItemFailure, ...] = ()
    converged: bool | None = None
    remaining: tuple[str, ...] = ()
    rolled_back: tuple[str, ...] = ()
    requests: int = 0
    room_revision: int | None = None
    """The room's revision (the id of its last room-server event) at the run's last state read: events up
    to it were made by the run or seen by it. None when unknown (that read failed, or a server without the
    operator endpoints)."""
