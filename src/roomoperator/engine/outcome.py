"""A run's outcome while it is made: the engine's mutable draft, frozen into a `RunResult` once, at the end.

The draft also owns what every phase says about the run: the audit entries it records (through the
engine's `AuditSink`, or, for a write announced by an intent, through its `Journal`), the reference's
warning texts for failed items, and how success, partial success and the run's code follow from what was
applied, failed and left over.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from roomoperator.engine.applying import Undo
from roomoperator.model.audit import AuditEntry, AuditSink, Intent, Journal
from roomoperator.model.changes import Change, Op
from roomoperator.model.codes import BlockCode, RunCode
from roomoperator.model.results import ItemFailure, Phase, ReconcileDiff, RunResult
from roomoperator.spec.models import RoomSpec

# Reference warning texts per op, for an item that could not be made.
FAILURE_TEXT: dict[Op, str] = {
    Op.JOIN: "Failed to join entity {name}: {error}",
    Op.UPDATE: "Failed to update entity {name}: {error}",
    Op.KICK: "Failed to kick entity {name}: {error}",
    Op.SEED: "Failed to seed artifact {name}: {error}",
    Op.RESEED: "Failed to seed artifact {name}: {error}",
    Op.PROMOTE: "Failed to promote artifact {name}: {error}",
    Op.DELETE_ARTIFACT: "Failed to delete artifact {name}: {error}",
    Op.SET_POLICY: "Failed to apply policy: {error}",
    Op.ENSURE_RESOURCE: "Failed to ensure resource {name}: {error}",
}
NOT_CONVERGED = "State not fully converged after reconciliation"
# Blocks that mean the run cannot do what the room needs (others are choices: protect, skip, waiting).
UNABLE = frozenset({BlockCode.MISSING_SCOPE, BlockCode.UNSUPPORTED, BlockCode.SEED_FILE_MISSING})


class RunAborted(Exception):
    """A run-level failure: the run stops and reports `code`."""

    def __init__(self, code: RunCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def label(change: Change) -> str:
    """`op:name`, as results list applied and remaining changes."""
    return f"{change.op}:{change.name}"


def blocked_warning(change: Change) -> str:
    assert change.blocked is not None
    if change.blocked.code is BlockCode.SEED_FILE_MISSING and change.op in (Op.SEED, Op.RESEED):
        return change.blocked.message
    return f"Blocked {change.op} {change.name} ({change.blocked.code}): {change.blocked.message}"


def metadata_text(value: object) -> str:
    """An audit metadata value as text (booleans lower-case, as JSON writes them)."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@dataclass
class RunDraft:
    """The bookkeeping of one run, in the shape of `RunResult`, until `freeze`."""

    spec: RoomSpec
    correlation_id: str
    actor: str | None
    dry_run: bool
    operator_version: str
    audit_sink: AuditSink | None
    phase: Phase = Phase.PLANNING
    success: bool = False
    partial_success: bool = False
    code: RunCode | None = None
    plan: dict[str, Any] | None = None
    diff: ReconcileDiff | None = None
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    failed: list[ItemFailure] = field(default_factory=list)
    converged: bool | None = None
    remaining: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    undos: list[Undo] = field(default_factory=list)
    unable: int = 0
    """Changes blocked because they cannot be made (`UNABLE`), not by choice."""
    aborted: RunAborted | None = None
    journal: Journal | None = None
    unsettled: list[Intent] = field(default_factory=list)
    """Intents of writes that failed without a definite answer: open, for the room's next run to settle."""
    room_revision: int | None = None
    """The room's revision (the id of its last event) at the run's last state read; None when that read
    failed."""
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    started: float = field(default_factory=time.perf_counter)

    def warn(self, *texts: str) -> None:
        """Add warnings not given yet (a re-plan repeats the same ones)."""
        self.warnings.extend(t for t in texts if t not in self.warnings)

    def refuse(self, code: RunCode, errors: list[str]) -> None:
        self.success, self.code, self.errors = False, code, errors

    def conclude(self) -> None:
        """success: nothing failed, and the room needed nothing or got something; partialSuccess: the run
        finished but the room is not fully converged. A run that made nothing because what the room
        needs cannot be made (`unable`: missing scopes or seed files, a server without the endpoints) is
        no success; removals held back by `protect` and providers still connecting are not failures."""
        if self.remaining:
            self.warn(NOT_CONVERGED)
        all_blocked = self.unable > 0 and not self.applied
        self.success = not self.failed and not all_blocked
        self.partial_success = bool(self.failed or self.remaining)
        self.code = RunCode.ITEMS_FAILED if self.failed else RunCode.CHANGES_BLOCKED if all_blocked else None

    async def fail(
        self, change: Change, message: str, *, attempts: int, settles: Intent | None = None
    ) -> None:
        await self.record([(self.failure(change, message, attempts=attempts), settles)])

    def failure(self, change: Change, message: str, *, attempts: int) -> AuditEntry:
        """Note that `change` failed (in the result and its warnings); its `item.failed` entry, to record."""
        self.failed.append(
            ItemFailure(op=str(change.op), target=change.name, message=message, attempts=attempts)
        )
        self.warnings.append(FAILURE_TEXT[change.op].format(name=change.name, error=message))
        return self.entry("item.failed", op=change.op, target=change.name, error=message, attempts=attempts)

    def entry(self, action: str, **metadata: object) -> AuditEntry:
        return AuditEntry(
            type="event",
            action=action,
            correlation_id=self.correlation_id,
            operator_version=self.operator_version,
            spec_version=self.spec.metadata.version,
            room_id=self.spec.room_id,
            actor=self.actor,
            metadata={key: metadata_text(value) for key, value in metadata.items()},
        )

    async def audit(self, action: str, *, settles: Intent | None = None, **metadata: object) -> None:
        """Record an audit entry; with `settles`, as the outcome of that intent (one transaction)."""
        await self.record([(self.entry(action, **metadata), settles)])

    async def record(self, entries: Sequence[tuple[AuditEntry, Intent | None]]) -> None:
        """Record audit entries in order; the ones paired with an intent settle it, all of those in one
        journal transaction (a batch's entries cost one commit and one wait)."""
        if self.journal is not None:
            settled = [(intent, entry) for entry, intent in entries if intent is not None]
            if settled:
                await self.journal.settle(settled)
            entries = [(entry, intent) for entry, intent in entries if intent is None]
        if self.audit_sink is not None:
            for entry, _ in entries:
                await self.audit_sink.record(entry)

    def intent(self, change: Change, action: str, **metadata: object) -> Intent | None:
        """The intent of making `change` (audited `action` with `metadata` once made); None without a
        journal."""
        if self.journal is None:
            return None
        return Intent(
            id=str(uuid.uuid4()),
            op=str(change.op),
            target=change.name,
            since=self.room_revision or 0,
            entry=self.entry(action, **metadata),
        )

    async def intend(self, intents: Sequence[Intent]) -> None:
        """Record `intents` durably, before their writes are made."""
        if self.journal is not None and intents:
            await self.journal.intend(intents)

    async def abandon(self, intent: Intent) -> None:
        """`intent`'s write was never attempted: drop it without an audit entry."""
        if self.journal is not None:
            await self.journal.settle([(intent, None)])

    def freeze(self, *, requests: int) -> RunResult:
        """The run's `RunResult`, made once, with its duration and request count."""
        return RunResult(
            success=self.success,
            partial_success=self.partial_success,
            correlation_id=self.correlation_id,
            room_id=self.spec.room_id,
            spec_version=self.spec.metadata.version,
            phase=self.phase,
            dry_run=self.dry_run,
            diff=self.diff,
            warnings=tuple(self.warnings),
            errors=tuple(self.errors),
            code=self.code,
            duration=time.perf_counter() - self.started,
            started_at=self.started_at,
            finished_at=dt.datetime.now(dt.UTC),
            plan=self.plan,
            applied=tuple(self.applied),
            failed=tuple(self.failed),
            converged=self.converged,
            remaining=tuple(self.remaining),
            rolled_back=tuple(self.rolled_back),
            requests=requests,
            room_revision=self.room_revision,
        )
