"""The controller: turns applies, loop ticks and room-server events into serialised runs per room.

It is thin on purpose and composes one part per concern: the room registry (`rooms`), the durable run
lifecycle (`runs`), scheduling over the queue and loop (`scheduling`), the acceptance rules
(`acceptance`) and the observers of run events (`observing`: metrics, health, audit). It is the only
caller of the engine's `Reconciler`. Routes and the CLI use only its public methods.

Every accepted apply is a durable run row before it is queued, so a crash never loses it: `start()`
resumes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.audit import utcnow
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase, RunResult
from roomoperator.planning.planner import protected_names
from roomoperator.service.acceptance import Accepted, accept
from roomoperator.service.auditing import AuditLog
from roomoperator.service.health import HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.observing import (
    AuditObserver,
    Gauges,
    HealthObserver,
    MetricsObserver,
    Observers,
    PhaseStarted,
    RoomStalled,
    RoomUnmanaged,
    RunCancelled,
    RunFinished,
    RunQueued,
    RunResumed,
    RunStarted,
    RunSuperseded,
    SpecAccepted,
)
from roomoperator.service.rooms import RoomRegistry, RoomView, settled, view_from_record
from roomoperator.service.runs import RunLedger, RunRequest, Submission, has_changes, new_id, reached_apply
from roomoperator.service.scheduling import Scheduler
from roomoperator.service.schemas import ConditionType
from roomoperator.settings import OperatorSettings
from roomoperator.spec.models import RoomSpec
from roomoperator.store import RunRecord, SpecVersion, Store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class _Target:
    """What a run reconciles towards."""

    spec: RoomSpec
    base_dir: Path | None
    confirm: bool


class Controller:
    """Applies, loop runs and event-triggered runs, one at a time per room, `parallelRooms` at once."""

    def __init__(
        self,
        *,
        settings: OperatorSettings,
        store: Store,
        audit: AuditLog,
        reconciler: Reconciler,
        metrics: OperatorMetrics,
        health: HealthMonitor,
    ) -> None:
        self.settings = settings
        self.seed_root = settings.seed_root.resolve()
        self._store = store
        self._reconciler = reconciler
        self._rooms = RoomRegistry()
        self._runs = RunLedger(store, seed_root=self.seed_root)
        self._observers = Observers(
            MetricsObserver(metrics),
            HealthObserver(health),
            AuditObserver(audit, self._rooms, operator_version=settings.version),
        )
        self._gauges = Gauges(metrics, health)
        self._scheduler = Scheduler(
            settings.reconciliation,
            work=self._execute,
            managed=lambda room_id: self._rooms.managed(room_id) is not None,
            on_queue_change=self._refresh_gauges,
        )
        self._stall_limit = settings.reconciliation.max_cycles_until_converged

    # Life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every room from the store, resume interrupted runs, start the loop."""
        for record in await self._store.list_rooms():
            view = view_from_record(record, seed_root=self.seed_root)
            self._rooms.add(view)
            if view.managed:
                self._scheduler.after_run(view.room_id)
        for request, status in await self._runs.interrupted():
            log.info(
                "resuming interrupted run", room_id=request.room_id, correlation_id=request.correlation_id
            )
            self._rooms.ensure(request.room_id)
            self._scheduler.forget(request.room_id)
            await self._observers.publish(RunResumed(request, interrupted_while=status))
            self._scheduler.submit(request)
        self._refresh_gauges()
        self._scheduler.start()

    async def stop(self) -> None:
        await self._scheduler.stop()

    async def wait_idle(self) -> None:
        """Wait until no room is running or pending (tests, `roomop up`)."""
        await self._scheduler.join()

    # Views -------------------------------------------------------------------------------------------

    def room(self, room_id: str) -> RoomView | None:
        return self._rooms.get(room_id)

    def rooms(self) -> Iterable[RoomView]:
        """Every known room, in the order the operator learnt of them."""
        return iter(self._rooms)

    @property
    def queued_count(self) -> int:
        return self._scheduler.queued

    @property
    def active_count(self) -> int:
        return self._scheduler.active

    async def run(self, correlation_id: str) -> RunRecord | None:
        return await self._store.get_run(correlation_id)

    async def history(self, room_id: str) -> list[SpecVersion] | None:
        """Every spec version applied to the room; None for a room the operator does not know."""
        return None if self._rooms.get(room_id) is None else await self._store.history(room_id)

    # Requests ----------------------------------------------------------------------------------------

    def accept(self, spec: RoomSpec | None, *, room_id: str) -> Accepted:
        """The acceptance rules for `spec` (None: run the desired spec again); raises `Refused`."""
        return accept(room_id, spec, self._rooms.get(room_id))

    def _offer(
        self, spec: RoomSpec, *, base_dir: Path | None, confirm: bool, actor: str | None
    ) -> tuple[RunRequest, Accepted]:
        """The request to apply `spec`, once the acceptance rules took it; raises `Refused`."""
        accepted = self.accept(spec, room_id=spec.room_id)
        request = RunRequest.of(
            spec.room_id,
            "apply",
            actor=actor,
            spec=spec,
            base_dir=base_dir or self.seed_root,
            confirm=confirm,
        )
        return request, accepted

    async def apply(
        self, spec: RoomSpec, *, base_dir: Path | None = None, confirm: bool = False, actor: str | None = None
    ) -> Submission:
        """Accept a spec durably and run it now or after the room's current run; raises `Refused`."""
        request, accepted = self._offer(spec, base_dir=base_dir, confirm=confirm, actor=actor)
        await self._runs.accepted(request)
        return Submission(request, await self._submit(request), accepted.warnings)

    async def dry_run(
        self, spec: RoomSpec, *, base_dir: Path | None = None, confirm: bool = False, actor: str | None = None
    ) -> Submission:
        """Plan and check a spec without writing (never waiting for the room's queue); raises `Refused`."""
        request, accepted = self._offer(spec, base_dir=base_dir, confirm=confirm, actor=actor)
        result = await self._reconciler.reconcile(
            spec,
            seed_root=request.base_dir or self.seed_root,
            dry_run=True,
            confirm=confirm,
            correlation_id=request.correlation_id,
            actor=actor,
            protected=self._protected(spec.room_id),
        )
        await self._runs.dry_run(request, result)
        request.done.set_result(result)
        return Submission(request, True, accepted.warnings)

    async def reconcile_now(self, room_id: str, *, actor: str | None = None) -> RunRequest:
        """Run a managed room's desired spec as soon as the room is free; raises `Refused` otherwise."""
        self.accept(None, room_id=room_id)
        pending = self._scheduler.pending(room_id)
        if pending is not None and pending.durable:
            return pending
        request = RunRequest.of(room_id, "reconcile", actor=actor)
        await self._runs.accepted(request)
        await self._submit(request)
        return request

    async def unmanage(self, room_id: str, *, actor: str | None = None) -> bool:
        """Stop reconciling a room (nothing is removed from the room server)."""
        view = self._rooms.managed(room_id)
        if view is None:
            return False
        view.managed = False
        self._scheduler.forget(room_id)
        await self._store.unmanage(room_id)
        await self._observers.publish(RoomUnmanaged(room_id, actor, new_id()))
        self._rooms.recount(view)
        self._refresh_gauges()
        return True

    def on_room_event(self, room_id: str) -> None:
        """The room server reported a change in `room_id`: reconcile it now (drift correction)."""
        self._scheduler.on_room_event(room_id)

    async def _submit(self, request: RunRequest) -> bool:
        submitted = self._scheduler.submit(request)
        old = submitted.superseded
        if old is not None:
            if old.durable:
                await self._runs.superseded(old, by=request)
            await self._observers.publish(RunSuperseded(old, by=request))
            old.done.set_result(None)
        if not submitted.started:
            await self._observers.publish(RunQueued(request))
        self._refresh_gauges()
        return submitted.started

    # Running -----------------------------------------------------------------------------------------

    def _target(self, request: RunRequest, view: RoomView) -> _Target | None:
        """The spec to run: the request's own, or the room's desired one (None: the room is unmanaged)."""
        if request.spec is not None:
            return _Target(request.spec, request.base_dir, request.confirm)
        if view.spec is None or not view.managed:
            return None
        # Runs of the stored spec keep its confirmation: converging towards a confirmed spec needs no
        # second confirmation (the kick and delete limits still apply to every run).
        return _Target(view.spec, view.base_dir, view.confirmed)

    async def _execute(self, request: RunRequest) -> None:
        view = self._rooms.ensure(request.room_id)
        target = self._target(request, view)
        if target is None:
            await self._runs.not_managed(request)
            request.done.set_result(None)
            return
        view.run_started(limit=self._stall_limit)
        await self._runs.running(request)
        await self._observers.publish(RunStarted(request))
        self._refresh_gauges()
        try:
            result = await self._reconcile(request, view, target)
        except asyncio.CancelledError:
            await self._observers.publish(RunCancelled(request))
            view.run_interrupted()
            raise
        changed = has_changes(result)
        await self._observers.publish(RunFinished(request, result, changed))
        await self._settle(request, view, target, result, changed=changed)
        request.done.set_result(result)

    async def _reconcile(self, request: RunRequest, view: RoomView, target: _Target) -> RunResult:
        def progress(phase: str, done: int, total: int) -> None:
            view.current_phase = phase
            if done == 0:
                self._observers.phase_started(PhaseStarted(request, phase))

        try:
            with bound_contextvars(correlation_id=request.correlation_id, room_id=request.room_id):
                return await self._reconciler.reconcile(
                    target.spec,
                    seed_root=target.base_dir or self.seed_root,
                    confirm=target.confirm,
                    correlation_id=request.correlation_id,
                    actor=request.actor,
                    progress=progress,
                    protected=self._protected(request.room_id),
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
        """Bookkeeping after a run: the view, the desired spec, the store, the next due time, stalling."""
        body = result.model_dump(mode="json", by_alias=True)
        before = settled(view)
        view.run_finished(result, limit=self._stall_limit)
        if request.trigger == "apply" and reached_apply(result):
            await self._desire(request, view, target, result, diff=body.get("diff"))
        if request.durable or changed or not result.success or before != settled(view):
            # A loop run that found a converged room and changed nothing is not worth a store write.
            await self._store.save_status(
                view.room_id,
                conditions=[c.model_dump(mode="json", by_alias=True) for c in view.conditions],
                cycles_since_converged=view.cycles_since_converged,
                last_result=body,
            )
        await self._runs.finished(request, result, body, changed=changed)
        if view.managed:
            self._scheduler.after_run(view.room_id, failures=view.failures)
        self._rooms.recount(view)
        self._refresh_gauges()
        if view.stalled and (ConditionType.STALLED, "True") not in before:
            await self._observers.publish(RoomStalled(result, view.cycles_since_converged))

    async def _desire(
        self,
        request: RunRequest,
        view: RoomView,
        target: _Target,
        result: RunResult,
        *,
        diff: dict[str, Any] | None,
    ) -> None:
        """The run got past the guardrails: its spec becomes the room's desired state."""
        revision = await self._store.set_desired(
            view.room_id,
            target.spec.to_wire(),
            spec_version=target.spec.metadata.version,
            base_dir=str(target.base_dir) if target.base_dir else None,
            confirmed=request.confirm,
            correlation_id=result.correlation_id,
            actor=request.actor,
            diff=diff,
        )
        view.desire(target.spec, base_dir=target.base_dir, confirmed=request.confirm, revision=revision)
        await self._observers.publish(SpecAccepted(request, result, revision))

    def _protected(self, room_id: str) -> frozenset[str]:
        """What the room's desired spec marks `protect: true`."""
        view = self._rooms.managed(room_id)
        return protected_names(view.spec if view is not None else None)

    def _refresh_gauges(self) -> None:
        self._gauges.refresh(self._rooms, queued=self._scheduler.queued)
