"""The controller: turns applies, loop ticks and room-server events into serialised runs per room.

It is thin on purpose and composes one part per concern: the room registry (`rooms`), the durable run
lifecycle (`runs`), scheduling over the queue and loop (`scheduling`), the acceptance rules
(`acceptance`), the observers of run events (`observing`: metrics, health, audit, notifications) and
the GitOps sources' side (`sourcing`). It is the only caller of the engine's `Reconciler`. Routes and
the CLI use only its public methods.

Every accepted apply is a revision and a durable run row before it is queued (one store transaction,
`acceptance.accept`), so a crash never loses it: `start()` resumes it. Acceptance and queueing of one
room happen under the room's lock, so the queue sees requests in the order of their revisions: a
pending (202) apply is superseded only by one acknowledged after it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.audit import utcnow
from roomoperator.model.codes import ApiCode, RunCode
from roomoperator.model.results import Phase, RunResult
from roomoperator.notifications.delivery import Notifier
from roomoperator.service.acceptance import Acceptor, Offer, Refused, request_of
from roomoperator.service.auditing import AuditLog
from roomoperator.service.health import HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.observing import (
    AuditObserver,
    Gauges,
    HealthObserver,
    MetricsObserver,
    NotificationObserver,
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
from roomoperator.service.protection import Protection
from roomoperator.service.queueing import Submitted
from roomoperator.service.rooms import Page, RoomRegistry, RoomView, settled, view_from_record
from roomoperator.service.runs import RunLedger, RunRequest, Submission, has_changes, new_id, reached_apply
from roomoperator.service.scheduling import Scheduler
from roomoperator.service.schemas import ConditionType
from roomoperator.service.seedstore import SeedStore
from roomoperator.service.sourcing import SourceSink
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
    revision: int | None


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
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        # Where a run without a seed folder of its own looks: the (empty) folder of a spec naming no seed.
        self.seed_root = SeedStore.of(settings).tree_of({})
        self._store = store
        self._reconciler = reconciler
        self._rooms = RoomRegistry()
        self._runs = RunLedger(store, seed_root=self.seed_root)
        self._protection = Protection(store)
        self._acceptor = Acceptor(
            store,
            reconciler.seed_files,
            rule=settings.reconciliation.upgrade,
            seed_root=self.seed_root,
            overridable=[source.name for source in settings.sources if source.allow_overrides],
        )
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        """Per room: held while a request is accepted and queued, so the queue sees revision order."""
        self._observers = Observers(
            MetricsObserver(metrics),
            HealthObserver(health),
            AuditObserver(audit, self._rooms, operator_version=settings.version),
            *([NotificationObserver(notifier)] if notifier is not None else []),
        )
        self._gauges = Gauges(metrics, health)
        self._scheduler = Scheduler(
            settings.reconciliation,
            work=self._execute,
            managed=lambda room_id: self._rooms.managed(room_id) is not None,
            on_queue_change=self._refresh_gauges,
        )
        self._stall_limit = settings.reconciliation.max_cycles_until_converged
        self.sources = SourceSink(
            sources=settings.sources,
            acceptor=self._acceptor,
            rooms=self._rooms,
            store=store,
            take=self._take,
            unmanage=lambda room_id, actor: self.unmanage(room_id, actor=actor),
            publish=self._observers.publish,
        )
        """What the GitOps sources offer their rooms through (`service/sourcing.py`)."""

    # Life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every room from the store (a room owned by a source no longer configured is released),
        hand the engine the writes a crash left unsettled (each room's next run settles them before
        planning), resume interrupted runs, start the loop."""
        self._reconciler.adopt(await self._store.open_intents())
        latest = await self._store.latest_revisions()
        for record in await self._store.list_rooms():
            view = view_from_record(record, seed_root=self.seed_root, latest=latest.get(record.room_id))
            self._rooms.add(view)
            await self.sources.adopt(record.room_id, record.source)
            if view.managed:
                self._scheduler.after_run(view.room_id)
        for request, status in await self._runs.interrupted():
            log.info(
                "resuming interrupted run", room_id=request.room_id, correlation_id=request.correlation_id
            )
            await self._acceptor.adopt(self._rooms.ensure(request.room_id), request)
            self._scheduler.forget(request.room_id)
            await self._observers.publish(RunResumed(request, interrupted_while=status))
            self._scheduler.submit(request)
        self._refresh_gauges()
        self._scheduler.start()

    async def stop(self) -> None:
        await self._scheduler.stop()

    async def wait_idle(self) -> None:
        """Wait until no room is running, pending or due now (tests, `roomop up`)."""
        await self._scheduler.join()

    # Views -------------------------------------------------------------------------------------------

    def room(self, room_id: str) -> RoomView | None:
        return self._rooms.get(room_id)

    def rooms(self) -> Iterable[RoomView]:
        """Every known room, in the order the operator learnt of them."""
        return iter(self._rooms)

    def rooms_page(self, *, after: str | None, limit: int) -> Page:
        """A page of rooms in room-id order (`GET /status`, `GET /rooms`)."""
        return self._rooms.page(after=after, limit=limit)

    @property
    def queued_count(self) -> int:
        return self._scheduler.queued

    @property
    def active_count(self) -> int:
        return self._scheduler.active

    async def run(self, correlation_id: str) -> RunRecord | None:
        return await self._store.get_run(correlation_id)

    async def history(self, room_id: str) -> list[SpecVersion] | None:
        """Every revision of a room; None for a room the operator does not know."""
        return None if self._rooms.get(room_id) is None else await self._store.history(room_id)

    # Requests ----------------------------------------------------------------------------------------

    async def apply(
        self,
        spec: RoomSpec,
        *,
        base_dir: Path | None = None,
        confirm: bool = False,
        actor: str | None = None,
        force: bool = False,
        keep_stored: bool = False,
        dry_run: bool = False,
        expect: str | None = None,
        warnings: Sequence[str] = (),
    ) -> Submission:
        """Accept a spec as a revision (or `unchanged`) and run it now or after the room's current run;
        raises `Refused`. `force` takes a lower version; `keep_stored` keeps a revision made through
        another path when the spec is not newer (`roomop up`); `dry_run` plans and checks it without
        writing (never waiting for the room's queue); `expect` is the digest of the plan the caller
        confirmed; `warnings` (the spec's own) lead the answer's."""
        offer = await self._acceptor.offer(
            spec,
            base_dir=base_dir,
            confirm=confirm,
            actor=actor,
            force=force,
            keep_stored=keep_stored,
            expect=expect,
        )
        return await (self._plan(offer, warnings) if dry_run else self._take(offer, warnings))

    async def restore(
        self,
        room_id: str,
        revision: int,
        *,
        dry_run: bool = False,
        confirm: bool = False,
        actor: str | None = None,
    ) -> Submission:
        """Apply revision `revision`'s spec again, with the seed folder it recorded, as a new revision
        that says which one it restored (or only plan it: `dry_run`); raises `Refused`."""
        if self._rooms.get(room_id) is None:
            raise Refused(ApiCode.NOT_FOUND, [f"Room {room_id} not found"], room_id=room_id)
        offer, warnings = await self._acceptor.restoring(room_id, revision, confirm=confirm, actor=actor)
        return await (self._plan(offer, warnings) if dry_run else self._take(offer, warnings))

    async def reconcile_now(self, room_id: str, *, actor: str | None = None) -> RunRequest:
        """Run a managed room's desired spec as soon as the room is free; raises `Refused` otherwise."""
        async with self._locks[room_id]:
            view = self._rooms.get(room_id) or RoomView(room_id=room_id)
            accepted = await self._acceptor.accept(view, None, correlation_id="")
            pending = self._scheduler.pending(room_id)
            if pending is not None and pending.durable:
                return pending
            request = RunRequest.of(room_id, "reconcile", actor=actor, revision=accepted.revision)
            await self._runs.accepted(request)
            submitted = self._scheduler.submit(request)
        await self._queued(request, submitted)
        return request

    async def _take(self, offer: Offer, warnings: Sequence[str] = ()) -> Submission:
        """Accept `offer` and queue its run, under the room's lock (revision order is queue order)."""
        room_id, correlation_id = offer.spec.room_id, new_id()
        async with self._locks[room_id]:
            view = self._rooms.ensure(room_id)
            accepted = await self._acceptor.accept(view, offer, correlation_id=correlation_id)
            if accepted.recorded is not None:
                self._protection.declare(room_id, accepted.recorded.revision, offer.spec)
            request = request_of(offer, accepted, correlation_id)
            submitted = self._scheduler.submit(request)
        await self._queued(request, submitted)
        return Submission(request, submitted.started, [*warnings, *accepted.warnings], accepted.unchanged)

    async def _plan(self, offer: Offer, warnings: Sequence[str] = ()) -> Submission:
        """A dry run of `offer`: judged, planned and checked, nothing written to the room or the history."""
        room_id, correlation_id = offer.spec.room_id, new_id()
        view = self._rooms.get(room_id) or RoomView(room_id=room_id)
        accepted = await self._acceptor.accept(view, offer, correlation_id=correlation_id, dry_run=True)
        request = request_of(offer, accepted, correlation_id)
        result = await self._reconciler.reconcile(
            offer.spec,
            seed_root=offer.base_dir,
            dry_run=True,
            confirm=offer.confirm,
            correlation_id=correlation_id,
            actor=offer.actor,
            protected=await self._protection.names(room_id),
        )
        await self._runs.dry_run(request, result)
        request.done.set_result(result)
        return Submission(request, True, [*warnings, *accepted.warnings], accepted.unchanged)

    async def unmanage(self, room_id: str, *, actor: str | None = None) -> bool:
        """Stop reconciling a room (nothing is removed from the room server)."""
        view = self._rooms.managed(room_id)
        if view is None:
            return False
        view.managed = False
        view.latest = None  # a room managed again later takes any spec, as a new room does
        self._scheduler.forget(room_id)
        await self._store.unmanage(room_id)
        await self._observers.publish(RoomUnmanaged(room_id, actor, new_id()))
        self._rooms.recount(view)
        self._refresh_gauges()
        return True

    def on_room_event(self, room_id: str, event_id: str | None = None) -> None:
        """The room server reported event `event_id` in `room_id`: reconcile the room when it is news
        (drift correction; `scheduling.Scheduler.on_room_event`)."""
        seq = int(event_id) if event_id and event_id.isascii() and event_id.isdigit() else None
        self._scheduler.on_room_event(room_id, seq)

    async def _queued(self, request: RunRequest, submitted: Submitted[RunRequest]) -> None:
        """Bookkeeping after `request` went to the queue: the run it superseded, the queued event."""
        old = submitted.superseded
        if old is not None:
            if old.durable:
                await self._runs.superseded(old, by=request)
            await self._observers.publish(RunSuperseded(old, by=request))
            old.done.set_result(None)
        if not submitted.started:
            await self._observers.publish(RunQueued(request))
        self._refresh_gauges()

    # Running -----------------------------------------------------------------------------------------

    def _target(self, request: RunRequest, view: RoomView) -> _Target | None:
        """The spec to run: the request's own, or the room's desired one (None: the room is unmanaged)."""
        if request.spec is not None:
            return _Target(request.spec, request.base_dir, request.confirm, request.revision)
        if view.spec is None or not view.managed:
            return None
        # Runs of the stored spec keep its confirmation: converging towards a confirmed spec needs no
        # second confirmation (the kick and delete limits still apply to every run).
        request.revision = view.revision
        return _Target(view.spec, view.base_dir, view.confirmed, view.revision)

    async def _execute(self, request: RunRequest) -> None:
        view = self._rooms.ensure(request.room_id)
        target = self._target(request, view)
        if target is None:
            await self._runs.not_managed(request)
            request.done.set_result(None)
            return
        if await self._still_rolled_back(request, view):
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

    async def _still_rolled_back(self, request: RunRequest, view: RoomView) -> bool:
        """A loop or event run of a desired revision that failed and was rolled back waits until the room
        changes (one state read says; an unreadable room counts as unchanged). A caller's request runs."""
        held = view.rolled_back_at
        if request.durable or request.spec is not None or held is None:
            return False
        if await self._reconciler.room_revision(view.room_id) not in (None, held):
            return False
        self._scheduler.after_run(view.room_id, failures=view.failures, room_revision=held)
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
                    seed_root=target.base_dir or self.seed_root,
                    confirm=target.confirm,
                    correlation_id=request.correlation_id,
                    actor=request.actor,
                    progress=progress,
                    protected=await self._protection.names(request.room_id),
                    expect=request.expect,
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
        if request.trigger == "apply" and target.revision is not None and reached_apply(result):
            await self._desire(request, view, target, result, diff=body.get("diff"))
        view.run_finished(result, limit=self._stall_limit)  # after `_desire`: conditions name the revision
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
            self._scheduler.after_run(
                view.room_id, failures=view.failures, room_revision=result.room_revision
            )
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
        """The run got past the guardrails: its revision becomes the room's desired state."""
        revision = target.revision
        assert revision is not None
        await self._store.mark_desired(view.room_id, revision, confirmed=request.confirm, diff=diff)
        view.desire(target.spec, base_dir=target.base_dir, confirmed=request.confirm, revision=revision)
        await self._observers.publish(SpecAccepted(request, result, revision))

    def _refresh_gauges(self) -> None:
        self._gauges.refresh(self._rooms, queued=self._scheduler.queued)
