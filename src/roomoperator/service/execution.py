"""Running one request of a room, as the queue hands it over: what it runs towards (the request's spec,
the room's pending revision, or its desired one), the engine's run under this replica's fencing epoch,
and the bookkeeping after it (the view, the desired or pending revision, the store in one transaction,
the next due time, stalling, the observers).

A run that gets past the guardrails makes its revision desired; one that could not judge its spec
(`runs.undecided`: the room unreadable or unreachable) leaves it pending, so every later run goes towards
it; one the guardrails refused leaves the desired spec as it was. The controller (`service/controller.py`)
owns the queue and calls `RunExecutor.execute` for each request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from structlog.contextvars import bound_contextvars

from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.audit import utcnow
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase, RunResult
from roomoperator.service.observing import (
    Observers,
    PhaseStarted,
    RoomStalled,
    RoomUnchanged,
    RunCancelled,
    RunFinished,
    RunStarted,
    SpecAccepted,
)
from roomoperator.service.protection import Protection
from roomoperator.service.replicas import Replicas
from roomoperator.service.rooms import Pending, RoomRegistry, RoomView, settled
from roomoperator.service.runs import (
    RunLedger,
    RunRequest,
    has_changes,
    left_settled,
    reached_apply,
    undecided,
)
from roomoperator.service.schemas import ConditionType
from roomoperator.spec.models import RoomSpec
from roomoperator.store import FencedError
from roomoperator.store.batching import Desired, StoredStatus
from roomoperator.store.leases import RUN_EPOCH

log = structlog.get_logger(__name__)

AfterRun = Callable[[str, int, int | None], None]
"""Schedule a room's next run: (room id, failures in a row, the room's revision its run last read)."""


@dataclass(frozen=True)
class _Target:
    """What a run reconciles towards."""

    spec: RoomSpec
    base_dir: Path | None
    confirm: bool
    revision: int | None
    deciding: bool = False
    """The run decides whether `revision` becomes desired (an apply's, or a pending revision's)."""


class RunExecutor:
    """Executes the requests the room queues hand over, one per room at a time."""

    def __init__(
        self,
        *,
        reconciler: Reconciler,
        rooms: RoomRegistry,
        runs: RunLedger,
        protection: Protection,
        observers: Observers,
        replicas: Replicas | None,
        seed_root: Path,
        stall_limit: int,
        after_run: AfterRun,
        on_change: Callable[[], None],
    ) -> None:
        self._reconciler = reconciler
        self._rooms = rooms
        self._runs = runs
        self._protection = protection
        self._observers = observers
        self._replicas = replicas
        self._seed_root = seed_root
        self._stall_limit = stall_limit
        self._after_run = after_run
        self._on_change = on_change
        """Called when the counts of queued, running or stalled rooms may have changed (gauges)."""

    def _target(self, request: RunRequest, view: RoomView) -> _Target | None:
        """The spec to run: the request's own, or the room's desired one (None: the room is unmanaged)."""
        if request.spec is not None:
            deciding = request.trigger == "apply" and request.revision is not None
            return _Target(request.spec, request.base_dir, request.confirm, request.revision, deciding)
        if (pending := view.pending) is not None:
            request.revision = pending.revision
            return _Target(pending.spec, pending.base_dir, pending.confirmed, pending.revision, True)
        if view.spec is None or not view.managed:
            return None
        # Runs of the stored spec keep its confirmation: converging towards a confirmed spec needs no
        # second confirmation (the kick and delete limits still apply to every run).
        request.revision = view.revision
        return _Target(view.spec, view.base_dir, view.confirmed, view.revision)

    async def execute(self, request: RunRequest) -> None:
        """Run `request` (a fenced run stops: a waiting caller gets 202, the new owner runs it)."""
        epoch = self._replicas.fencing.epoch(request.room_id) if self._replicas is not None else None
        token = RUN_EPOCH.set((request.room_id, epoch) if epoch is not None else None)
        try:
            await self._execute_owned(request)
        except FencedError as exc:  # another replica owns the room now: it runs (or resumes) the request
            log.info(
                "run fenced", room_id=request.room_id, correlation_id=request.correlation_id, reason=str(exc)
            )
            self._rooms.ensure(request.room_id).run_interrupted()
            if not request.done.done():  # a waiting caller gets 202: the new owner runs it
                request.done.set_result(None)
        finally:
            RUN_EPOCH.reset(token)

    async def _execute_owned(self, request: RunRequest) -> None:
        view = self._rooms.ensure(request.room_id)
        target = self._target(request, view)
        if target is None:
            await self._runs.not_managed(request)
            request.done.set_result(None)
            return
        if await self._unchanged(request, view) or await self._still_rolled_back(request, view):
            request.done.set_result(None)
            return
        view.settled_tag = None  # until this run ends settled
        view.run_started(limit=self._stall_limit)
        await self._runs.running(request)
        await self._observers.publish(RunStarted(request))
        self._on_change()
        try:
            result = await self._reconcile(request, view, target)
        except asyncio.CancelledError:
            view.run_interrupted()
            if not request.done.done():  # a waiting caller gets 202: the run resumes (here or elsewhere)
                request.done.set_result(None)
            await self._observers.publish(RunCancelled(request))
            raise
        changed = has_changes(result)
        await self._observers.publish(RunFinished(request, result, changed))
        await self._settle(request, view, target, result, changed=changed)
        request.done.set_result(result)

    async def _unchanged(self, request: RunRequest, view: RoomView) -> bool:
        """A loop run of a room its last run left settled is not made while the room server answers `304`
        for that state (one conditional read): it would plan nothing. Any change of the room (its data,
        presence, MCP resources: all move the `ETag`), a new spec, a room event or a caller's request
        makes the next run a real one."""
        tag = view.settled_tag
        if request.trigger != "loop" or request.spec is not None or tag is None:
            return False
        if not await self._reconciler.unchanged(view.room_id, tag):
            return False
        view.last_reconcile = utcnow()
        self._after_run(view.room_id, 0, view.last_result.room_revision if view.last_result else None)
        await self._observers.publish(RoomUnchanged(request))
        return True

    async def _still_rolled_back(self, request: RunRequest, view: RoomView) -> bool:
        """A loop or event run of a desired revision that failed and was rolled back waits until the room
        changes (one state read says; an unreadable room counts as unchanged). A caller's request runs."""
        held = view.rolled_back_at
        if request.durable or request.spec is not None or held is None:
            return False
        if await self._reconciler.room_revision(view.room_id) not in (None, held):
            return False
        self._after_run(view.room_id, view.failures, held)
        return True

    async def _reconcile(self, request: RunRequest, view: RoomView, target: _Target) -> RunResult:
        def progress(phase: str, done: int, total: int) -> None:
            view.current_phase = phase
            if done == 0:
                self._observers.phase_started(PhaseStarted(request, phase))

        try:
            with bound_contextvars(correlation_id=request.correlation_id, room_id=request.room_id):
                return await self._reconciler.reconcile(
                    target.spec,
                    seed_root=target.base_dir or self._seed_root,
                    confirm=target.confirm,
                    correlation_id=request.correlation_id,
                    actor=request.actor,
                    progress=progress,
                    protected=await self._protection.names(request.room_id),
                    expect=request.expect,
                    release=request.release,
                )
        except Exception as exc:  # an engine bug must not leave the run "running" forever
            log.exception("reconcile raised", room_id=request.room_id, correlation_id=request.correlation_id)
            return RunResult(
                success=False,
                correlation_id=request.correlation_id,
                room_id=request.room_id,
                spec_version=target.spec.metadata.version,
                phase=Phase.PLANNING,
                code=RunCode.INTERNAL_ERROR,
                errors=(f"{type(exc).__name__}: {exc}",),
                started_at=utcnow(),
            )

    async def _settle(
        self, request: RunRequest, view: RoomView, target: _Target, result: RunResult, *, changed: bool
    ) -> None:
        """Bookkeeping after a run: the view, the desired spec, the store (one transaction), the next due
        time, stalling."""
        before, pending = settled(view), view.pending
        desired = None
        if target.deciding and target.revision is not None:
            if reached_apply(result):  # the run got past the guardrails: its revision is now desired
                desired = target.revision
                view.desire(target.spec, base_dir=target.base_dir, confirmed=target.confirm, revision=desired)
            elif undecided(result):  # it could not read or reach the room: the next runs try again
                view.pending = Pending(target.spec, target.base_dir, target.confirm, target.revision)
            else:  # refused (guardrails, blocked changes, a changed plan): the desired spec stays
                view.pending = None
        view.run_finished(result, limit=self._stall_limit)  # after `desire`: conditions name the revision
        if (
            left_settled(result)
            and view.managed
            and view.pending is None
            and target.revision == view.revision
        ):
            view.settled_tag = self._reconciler.state_tag(view.room_id)
        if (
            request.durable
            or changed
            or not result.success
            or (before, pending) != (settled(view), view.pending)
        ):
            # A loop run that found a converged room and changed nothing is not worth a store write (nor
            # serialising its result).
            body = result.model_dump(mode="json", by_alias=True)
            conditions = [c.model_dump(mode="json", by_alias=True) for c in view.conditions]
            await self._runs.finished(
                request,
                result,
                body,
                changed=changed,
                desired=None if desired is None else Desired(desired, target.confirm, body.get("diff")),
                status=StoredStatus(
                    conditions,
                    view.cycles_since_converged,
                    {name: value for name, value in body.items() if name != "plan"},  # the run's row has it
                    view.pending.revision if view.pending else None,
                ),
            )
        if desired is not None:
            await self._observers.publish(SpecAccepted(request, result, desired))
        if view.wanted:
            self._after_run(view.room_id, view.failures, result.room_revision)
        self._rooms.recount(view)
        self._on_change()
        if view.stalled and (ConditionType.STALLED, "True") not in before:
            await self._observers.publish(RoomStalled(result, view.cycles_since_converged))
