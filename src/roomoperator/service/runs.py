"""Runs: what one request to reconcile a room is (`RunRequest`) and its durable life cycle in the store.

A run asked for by a caller (`apply`, `reconcile`) is a row from the moment it is accepted (an apply's
row is written by the acceptance, in the transaction that records its revision): queued,
then running, then succeeded or failed, or superseded by a later request for the same room. Loop and
event runs are written only when they found something (a change or a failure). After a crash,
`RunLedger.interrupted` hands back the latest unfinished run of each room to resume.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roomoperator.model.audit import utcnow
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase, RunResult
from roomoperator.service.rooms import stored_spec
from roomoperator.spec.models import RoomSpec
from roomoperator.store import RunRecord, Store
from roomoperator.store.batching import Desired, RunBook, RunOutcome, StoredStatus
from roomoperator.store.records import RunStatus, RunTrigger

DIFF_LISTS = (
    "to_join",
    "to_kick",
    "to_update",
    "to_seed",
    "to_promote",
    "to_apply",
    "to_delete_artifacts",
    "to_load",
)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class RunRequest:
    """One run waiting in (or running from) a room's queue. `spec` None means the stored desired spec;
    `revision` is the revision it applies (set when the run starts for runs of the desired spec)."""

    correlation_id: str
    room_id: str
    trigger: RunTrigger
    spec: RoomSpec | None = None
    base_dir: Path | None = None
    confirm: bool = False
    actor: str | None = None
    revision: int | None = None
    expect: str | None = None
    """The digest of the plan the caller confirmed, if any (see `Offer.expect`)."""
    release: frozenset[str] = frozenset()
    """A prune of an open room: the entities the operator may remove if it joined them (`Offer.release`;
    not stored: a resumed run removes none of them)."""
    done: asyncio.Future[RunResult | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def durable(self) -> bool:
        """Requested by a caller (kept in the runs table from the start), not by the loop."""
        return self.trigger in ("apply", "reconcile")

    @classmethod
    def of(
        cls,
        room_id: str,
        trigger: RunTrigger,
        *,
        actor: str | None = None,
        spec: RoomSpec | None = None,
        base_dir: Path | None = None,
        confirm: bool = False,
        revision: int | None = None,
        correlation_id: str | None = None,
        expect: str | None = None,
        release: frozenset[str] = frozenset(),
    ) -> RunRequest:
        """A new request (a fresh correlation id unless given; `spec` None: the room's desired spec)."""
        return cls(
            correlation_id or new_id(),
            room_id,
            trigger,
            spec=spec,
            base_dir=base_dir,
            confirm=confirm,
            actor=actor,
            revision=revision,
            expect=expect,
            release=release,
        )


@dataclass(frozen=True)
class Submission:
    """An accepted request: `started` when it runs now, else it waits for the room's current run.

    `warnings` are the acceptance's (e.g. entities the new spec removes), for the caller to show;
    `unchanged` says the spec was identical to the room's latest revision (no new revision).
    """

    request: RunRequest
    started: bool
    warnings: Sequence[str] = ()
    unchanged: bool = False


def has_changes(result: RunResult) -> bool:
    """Did the run find the room different from its spec?"""
    return bool(result.applied or result.failed) or (
        result.diff is not None and any(getattr(result.diff, name) for name in DIFF_LISTS)
    )


def _status(result: RunResult) -> RunStatus:
    return "succeeded" if result.success else "failed"


def reached_apply(result: RunResult) -> bool:
    """The run got past the guardrails and wrote (or found nothing to write): its spec is accepted."""
    return not result.dry_run and result.phase in (Phase.APPLY, Phase.VERIFY, Phase.ROLLBACK)


def left_settled(result: RunResult) -> bool:
    """The run left the room as its spec says, with nothing failed, blocked, rolled back or left for a
    later run: a run of the same spec on the same room state would plan nothing."""
    diff = result.diff
    return (
        result.success
        and not (result.partial_success or result.dry_run or result.remaining or result.failed)
        and result.converged is not False
        and result.phase is not Phase.ROLLBACK
        and (diff is None or not diff.blocked)
    )


UNDECIDING = frozenset(
    {
        RunCode.ROOM_SERVER_UNREACHABLE,
        RunCode.ROOM_SERVER_ERROR,
        RunCode.UNAUTHORIZED,
        RunCode.FENCED,
        RunCode.INTERNAL_ERROR,
    }
)
"""Failures that say nothing of the spec: the room could not be read or reached."""


def undecided(result: RunResult) -> bool:
    """The run failed before the guardrails could judge its spec (neither accepted nor refused)."""
    return not result.dry_run and not reached_apply(result) and result.code in UNDECIDING


class RunLedger:
    """The runs table as the controller uses it: one method per step of a run's life."""

    def __init__(self, store: Store, *, seed_root: Path) -> None:
        self._store = store
        self._book = RunBook(store)
        self._seed_root = seed_root

    async def accepted(self, request: RunRequest) -> None:
        await self._store.add_run(
            RunRecord(
                correlation_id=request.correlation_id,
                room_id=request.room_id,
                trigger=request.trigger,
                status="queued",
                created_at=utcnow(),
                confirm=request.confirm,
                actor=request.actor,
                spec=request.spec.to_wire() if request.spec else None,
                base_dir=str(request.base_dir) if request.base_dir else None,
                revision=request.revision,
            )
        )

    async def running(self, request: RunRequest) -> None:
        if request.durable:
            await self._book.started(request.room_id, request.correlation_id)

    async def superseded(self, old: RunRequest, *, by: RunRequest) -> None:
        await self._store.update_run(
            old.correlation_id,
            status="superseded",
            superseded_by=by.correlation_id,
            superseded_by_revision=by.revision,
        )

    async def not_managed(self, request: RunRequest) -> None:
        """The room stopped being managed before its run of the stored spec could start."""
        if request.durable:
            await self._store.update_run(
                request.correlation_id, status="failed", result={"errors": ["the room is not managed"]}
            )

    async def finished(
        self,
        request: RunRequest,
        result: RunResult,
        body: dict[str, Any],
        *,
        changed: bool,
        desired: Desired | None = None,
        status: StoredStatus | None = None,
    ) -> None:
        """Record the outcome with, in the same transaction, the revision it made `desired` and the room's
        `status` (`store/batching.py`); a loop or event run that changed nothing and succeeded leaves no
        row."""
        run: RunOutcome | RunRecord | None = None
        if request.durable:
            run = RunOutcome(request.correlation_id, _status(result), body)
        elif changed or not result.success:
            run = self._row(request, result, body)
        if run is not None or desired is not None or status is not None:
            await self._book.finished(request.room_id, desired=desired, status=status, run=run)

    async def dry_run(self, request: RunRequest, result: RunResult) -> None:
        """A dry run is written once, finished (it never waits in a queue)."""
        body = result.model_dump(mode="json", by_alias=True)
        await self._store.add_run(self._row(request, result, body))

    @staticmethod
    def _row(request: RunRequest, result: RunResult, body: dict[str, Any]) -> RunRecord:
        """The finished row of a run not written before (a dry run, a loop or event run that mattered)."""
        return RunRecord(
            correlation_id=result.correlation_id,
            room_id=request.room_id,
            trigger=request.trigger,
            status=_status(result),
            created_at=result.started_at,
            dry_run=result.dry_run,
            confirm=request.confirm,
            actor=request.actor,
            spec=request.spec.to_wire() if request.spec else None,
            result=body,
            revision=request.revision,
            finished_at=utcnow(),
        )

    async def interrupted(self) -> list[tuple[RunRequest, RunStatus]]:
        """The latest unfinished run of each room (older ones are marked superseded by it), to resume,
        with the status it was interrupted in."""
        latest: dict[str, RunRecord] = {}
        for run in await self._store.unfinished_runs():
            if (older := latest.get(run.room_id)) is not None:
                await self._store.update_run(
                    older.correlation_id,
                    status="superseded",
                    superseded_by=run.correlation_id,
                    superseded_by_revision=run.revision,
                )
            latest[run.room_id] = run
        return [(self.resumed(run), run.status) for run in latest.values()]

    def resumed(self, run: RunRecord) -> RunRequest:
        """The request to run `run` (a stored, unfinished run) again, here."""
        spec, base_dir = stored_spec(run.spec, run.base_dir, seed_root=self._seed_root)
        return RunRequest(
            correlation_id=run.correlation_id,
            room_id=run.room_id,
            trigger=run.trigger,
            spec=spec,
            base_dir=base_dir,
            confirm=run.confirm,
            actor=run.actor,
            revision=run.revision,
        )
