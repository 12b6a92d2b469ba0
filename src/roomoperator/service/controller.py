"""The controller: turns applies, loop ticks and room-server events into serialised runs per room.

It is thin on purpose and composes one part per concern: the room registry (`rooms`), the durable run
lifecycle (`runs`), scheduling over the queue and loop (`scheduling`), the acceptance rules
(`acceptance`), running one request and what follows it (`execution`), the observers of run events
(`observing`: metrics, health, audit, notifications) and the GitOps sources' side (`sourcing`). Routes
and the CLI use only its public methods.

Every accepted apply is a revision and a durable run row before it is queued (one store transaction,
`acceptance.accept`), so a crash never loses it: `start()` resumes it. Acceptance and queueing of one
room happen under the room's lock, so the queue sees requests in the order of their revisions: a
pending (202) apply is superseded only by one acknowledged after it.

With replicas (`replicas`, `service/replicas.py`) the controller runs only the rooms this replica owns:
an apply of a room owned elsewhere is accepted into the shared store and answered 202, and the owner
picks the run up from the store (`pick_up`), in revision order. Taking a room over loads it from the
store and resumes its unfinished runs; losing it cancels its run (`RoomOwner`). The module passes 400
lines for these replica hooks, which are the controller's part of ownership and share its state (the
queue, the room locks, the runs known here).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.codes import ApiCode
from roomoperator.notifications.delivery import Notifier
from roomoperator.service.acceptance import Acceptor, Offer, Refused, request_of
from roomoperator.service.auditing import AuditLog
from roomoperator.service.execution import RunExecutor
from roomoperator.service.health import HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.observing import (
    AuditObserver,
    Gauges,
    HealthObserver,
    MetricsObserver,
    NotificationObserver,
    Observers,
    RoomUnmanaged,
    RunQueued,
    RunResumed,
    RunSuperseded,
)
from roomoperator.service.protection import Protection
from roomoperator.service.queueing import Submitted
from roomoperator.service.replicas import Replicas
from roomoperator.service.rooms import Page, RoomRegistry, RoomView, view_from_record
from roomoperator.service.runs import RunLedger, RunRequest, Submission, new_id
from roomoperator.service.scheduling import Scheduler
from roomoperator.service.seedstore import SeedStore
from roomoperator.service.sourcing import SourceSink
from roomoperator.settings import OperatorSettings
from roomoperator.spec.models import RoomSpec
from roomoperator.store import RunRecord, SpecVersion, Store

log = structlog.get_logger(__name__)


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
        replicas: Replicas | None = None,
    ) -> None:
        self.settings = settings
        self.replicas = replicas
        """This replica's share of the rooms (None: a single operator, which owns every room)."""
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
            managed=lambda room_id: self._wanted(room_id) and self._owns(room_id),
            on_queue_change=self._refresh_gauges,
        )
        self._executor = RunExecutor(
            reconciler=reconciler,
            rooms=self._rooms,
            runs=self._runs,
            protection=self._protection,
            observers=self._observers,
            replicas=replicas,
            seed_root=self.seed_root,
            stall_limit=settings.reconciliation.max_cycles_until_converged,
            after_run=lambda room_id, failures, revision: self._scheduler.after_run(
                room_id, failures=failures, room_revision=revision
            ),
            on_change=self._refresh_gauges,
        )
        self._known: set[str] = set()
        """Durable runs this replica queued or runs (replicas: runs found in the store are the others)."""
        self._newest: dict[str, int] = {}
        """Per room: the newest revision this replica queued an apply of (replicas: older ones lose)."""
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
        planning), resume interrupted runs, start the loop. With replicas only the views are loaded here:
        the rooms this replica owns are taken through `take_rooms`."""
        if self.replicas is not None:
            latest = await self._store.latest_revisions()
            for record in await self._store.list_rooms():
                if self._rooms.get(record.room_id) is None:
                    view = view_from_record(
                        record, seed_root=self.seed_root, latest=latest.get(record.room_id)
                    )
                    self._rooms.add(view)
                await self.sources.adopt(record.room_id, record.source)
            self._refresh_gauges()
            self._scheduler.start()
            return
        self._reconciler.adopt(await self._store.open_intents())
        latest = await self._store.latest_revisions()
        for record in await self._store.list_rooms():
            view = view_from_record(record, seed_root=self.seed_root, latest=latest.get(record.room_id))
            self._rooms.add(view)
            await self.sources.adopt(record.room_id, record.source)
            if view.wanted:
                self._scheduler.after_run(view.room_id)
            if view.pending is not None:  # its last run could not reach the room: try again now
                self._scheduler.wake(view.room_id)
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

    # Replicas (`service/replicas.RoomOwner`) ---------------------------------------------------------

    async def take_rooms(self, room_ids: Sequence[str]) -> None:
        """This replica took these rooms: their records and open intents from the store, their unfinished
        runs resumed (`pick_up`), and a run of the desired spec soon for the others."""
        self._reconciler.adopt(await self._store.open_intents(room_ids=room_ids))
        await self._reload(room_ids)
        for room_id in room_ids:
            if self._wanted(room_id):
                self._scheduler.after_run(room_id)
        await self.pick_up(await self._store.unfinished_runs(room_ids=room_ids))
        for room_id in room_ids:
            if self._wanted(room_id) and self._scheduler.idle(room_id):
                self._scheduler.wake(room_id)
        self._refresh_gauges()

    async def _reload(self, room_ids: Sequence[str]) -> None:
        """The views of these rooms from the store (two queries), except those running here."""
        if not room_ids:
            return
        latest = await self._store.latest_revisions(room_ids=room_ids)
        for record in await self._store.list_rooms(room_ids=room_ids):
            if self._scheduler.idle(record.room_id):
                view = view_from_record(record, seed_root=self.seed_root, latest=latest.get(record.room_id))
                self._rooms.add(view)

    def drop_room(self, room_id: str) -> None:
        """This replica lost the room (or hands it back): its run is cancelled, its pending run stays
        queued in the store for the next owner."""
        pending = self._scheduler.drop(room_id)
        if pending is not None:
            self._known.discard(pending.correlation_id)
            if not pending.done.done():
                pending.done.set_result(None)
        self._newest.pop(room_id, None)
        self._refresh_gauges()

    def room_idle(self, room_id: str) -> bool:
        return self._scheduler.idle(room_id)

    async def pick_up(self, runs: Sequence[RunRecord]) -> None:
        """Runs of owned rooms accepted by another replica (or interrupted by a previous owner), oldest
        first: each is queued as a resumed run, except an apply older than one queued here (superseded)."""
        for run in sorted(runs, key=lambda run: (run.revision or 0, run.created_at)):
            if run.correlation_id in self._known or not self._owns(run.room_id):
                continue
            request = self._runs.resumed(run)
            async with self._locks[run.room_id]:
                newest = self._newest.get(run.room_id, 0)
                if request.spec is not None and (request.revision or 0) < newest:
                    await self._store.update_run(run.correlation_id, status="superseded")
                    continue
                if run.status == "running":  # interrupted (its owner died or lost the room)
                    await self._observers.publish(RunResumed(request, interrupted_while=run.status))
                submitted = self._submit(request)
            await self._queued(request, submitted)

    async def refresh_rooms(self, room_ids: Sequence[str]) -> None:
        """Rooms owned by other replicas changed in the store: their views here follow (`/status`)."""
        await self._reload([room_id for room_id in room_ids if not self._owns(room_id)])
        self._refresh_gauges()

    def owner_of(self, room_id: str) -> str | None:
        """The replica that owns the room (None: a single operator, or no replica holds it now)."""
        return None if self.replicas is None else self.replicas.owner_of(room_id)

    # Views -------------------------------------------------------------------------------------------

    def room(self, room_id: str) -> RoomView | None:
        view = self._rooms.get(room_id)
        return None if view is None else view.owned_by(self.owner_of(room_id))

    def rooms(self) -> Iterable[RoomView]:
        """Every known room, in the order the operator learnt of them."""
        return iter(self._rooms)

    def rooms_page(self, *, after: str | None, limit: int) -> Page:
        """A page of rooms in room-id order (`GET /status`, `GET /rooms`)."""
        page = self._rooms.page(after=after, limit=limit)
        if self.replicas is not None:
            for view in page.views:
                view.owned_by(self.replicas.owner_of(view.room_id))
        return page

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
            if not await self._claim(room_id):
                return request
            submitted = self._submit(request)
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
            if not await self._claim(room_id):
                return Submission(request, False, [*warnings, *accepted.warnings], accepted.unchanged)
            submitted = self._submit(request)
        await self._queued(request, submitted)
        return Submission(request, submitted.started, [*warnings, *accepted.warnings], accepted.unchanged)

    def _wanted(self, room_id: str) -> bool:
        view = self._rooms.get(room_id)
        return view is not None and view.wanted

    def _owns(self, room_id: str) -> bool:
        return self.replicas is None or self.replicas.owns(room_id)

    async def _claim(self, room_id: str) -> bool:
        """May this replica run the room? (replicas: it owns it, or takes it now as its preferred owner;
        otherwise the run waits in the store for the owner, which is told to look now)."""
        if self.replicas is None or await self.replicas.claim(room_id):
            return True
        await self.replicas.announce(room_id)
        return False

    def _submit(self, request: RunRequest) -> Submitted[RunRequest]:
        if request.durable:
            self._known.add(request.correlation_id)
            if request.spec is not None and request.revision is not None:
                self._newest[request.room_id] = max(self._newest.get(request.room_id, 0), request.revision)
        return self._scheduler.submit(request)

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
        view = self._rooms.get(room_id)
        if view is None or not view.wanted:
            return False
        self._stop_managing(view)
        await self._store.unmanage(room_id)
        if self.replicas is not None and not self._owns(room_id):
            await self.replicas.announce(room_id)  # its owner stops too
        await self._observers.publish(RoomUnmanaged(room_id, actor, new_id()))
        return True

    def _stop_managing(self, view: RoomView) -> None:
        view.managed, view.pending = False, None
        view.latest = None  # a room managed again later takes any spec, as a new room does
        self._scheduler.forget(view.room_id)
        self._rooms.recount(view)
        self._refresh_gauges()

    async def announced(self, room_ids: Sequence[str]) -> None:
        """Another replica accepted runs of these rooms owned here, or stopped managing them: stop too
        (the store says unmanaged while the view here is managed), and pick their runs up."""
        for room_id in room_ids:
            record, view = await self._store.get_room(room_id), self._rooms.get(room_id)
            stopped = record is not None and not record.managed and record.pending_revision is None
            if stopped and view is not None and view.wanted:
                self._stop_managing(view)
        await self.pick_up(await self._store.unfinished_runs(room_ids=room_ids))

    def on_room_event(self, room_id: str, event_id: str | None = None, *, actor: str | None = None) -> None:
        """The room server reported event `event_id` in `room_id`, made by `actor` (None: not said, or the
        operator itself): reconcile the room when it is news (drift correction;
        `scheduling.Scheduler.on_room_event`), and keep who changed it for the drift notification."""
        seq = int(event_id) if event_id and event_id.isascii() and event_id.isdigit() else None
        if self._scheduler.on_room_event(room_id, seq) and actor is not None:
            self._observers.room_changed(room_id, actor, seq)

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

    async def _execute(self, request: RunRequest) -> None:
        try:
            await self._executor.execute(request)
        finally:
            self._known.discard(request.correlation_id)

    def _refresh_gauges(self) -> None:
        self._gauges.refresh(self._rooms, queued=self._scheduler.queued)
