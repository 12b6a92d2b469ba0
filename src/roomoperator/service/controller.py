"""The controller: turns applies, loop ticks and room-server events into serialised runs per room.

It owns the in-memory view of every room (is it reconciling, its conditions, its convergence count),
keeps it in step with the store, and is the only caller of the engine's `Reconciler`. Every accepted
apply is a durable run row before it is queued, so a crash never loses it: `start()` resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic_core import to_json
from structlog.contextvars import bound_contextvars

from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.audit import AuditEntry, utcnow
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase, RunResult
from roomoperator.service.auditing import AuditLog
from roomoperator.service.health import HealthMonitor
from roomoperator.service.looping import Schedule
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.queueing import RoomQueue
from roomoperator.settings import OperatorSettings
from roomoperator.spec.models import RoomSpec
from roomoperator.store import RunRecord, Store
from roomoperator.store.records import RunStatus, RunTrigger

log = structlog.get_logger(__name__)

ConditionType = Literal["Ready", "Reconciling", "Stalled"]
PHASE_MARKERS = {
    "reconcile.planning": "PLANNING",
    "reconcile.pre_checks": "PRE_CHECKS",
    "reconcile.apply": "APPLY",
    "reconcile.rollback": "ROLLBACK",
    "reconcile.verify": "VERIFY",
}
DIFF_LISTS = ("to_join", "to_kick", "to_ensure", "to_seed", "to_promote", "to_apply", "to_delete_artifacts")


@dataclass
class RunRequest:
    """One run waiting in (or running from) a room's queue. `spec` None means the stored desired spec."""

    correlation_id: str
    room_id: str
    trigger: RunTrigger
    spec: RoomSpec | None = None
    base_dir: Path | None = None
    confirm: bool = False
    actor: str | None = None
    done: asyncio.Future[RunResult | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    @property
    def durable(self) -> bool:
        """Requested by a caller (kept in the runs table from the start), not by the loop."""
        return self.trigger in ("apply", "reconcile")


@dataclass
class RoomView:
    """The live status of one room (reference `RoomStatus`, plus conditions and management).

    Its serialised status is kept until a field is assigned again (`status_bytes`), so `GET /status`
    joins ready-made JSON instead of rebuilding every room. Fields are replaced, never mutated in place.
    """

    room_id: str
    managed: bool = False
    spec: RoomSpec | None = None
    base_dir: Path | None = None
    confirmed: bool = False
    revision: int = 0
    is_reconciling: bool = False
    current_phase: str | None = None
    last_reconcile: dt.datetime | None = None
    last_result: dict[str, Any] | None = None
    cycles_since_converged: int = 0
    failures: int = 0
    conditions: list[dict[str, Any]] = field(default_factory=list)
    _status: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "_status":
            object.__setattr__(self, "_status", None)

    def status_bytes(self) -> bytes:
        """`status_json()` as JSON (UTC timestamps written `...Z`), serialised once per change."""
        if self._status is None:
            self._status = to_json(self.status_json())
        return self._status

    @property
    def stalled(self) -> bool:
        return any(c["type"] == "Stalled" and c["status"] == "True" for c in self.conditions)

    def status_json(self) -> dict[str, Any]:
        """The reference `RoomStatus` fields in their order, then ours."""
        diff = (self.last_result or {}).get("diff")
        return {
            "roomId": self.room_id,
            "currentPhase": self.current_phase,
            "isReconciling": self.is_reconciling,
            "pendingDiff": diff,
            "blocked": list((diff or {}).get("blocked", [])),
            "lastReconcile": self.last_reconcile,
            "cyclesSinceConverged": self.cycles_since_converged,
            "managed": self.managed,
            "specVersion": self.spec.metadata.version if self.spec else None,
            "revision": self.revision,
            "conditions": self.conditions,
        }


def _condition(
    previous: list[dict[str, Any]], kind: ConditionType, status: bool, reason: str, message: str
) -> dict[str, Any]:
    value = "True" if status else "False"
    old = next((c for c in previous if c["type"] == kind), None)
    since = (
        old["lastTransitionTime"]
        if old and old["status"] == value
        else utcnow().isoformat().replace("+00:00", "Z")
    )
    return {"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": since}


def _settled(conditions: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Conditions without the transient Reconciling one, to tell whether a run changed anything."""
    return [(c["type"], c["status"]) for c in conditions if c["type"] != "Reconciling"]


def has_changes(result: RunResult) -> bool:
    """Did the run find the room different from its spec?"""
    return bool(result.applied or result.failed) or (
        result.diff is not None and any(getattr(result.diff, name) for name in DIFF_LISTS)
    )


def reached_apply(result: RunResult) -> bool:
    """The run got past the guardrails and wrote (or found nothing to write): its spec is accepted."""
    return not result.dry_run and result.phase in (Phase.APPLY, Phase.VERIFY, Phase.ROLLBACK)


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
        self.store = store
        self.audit = audit
        self.reconciler = reconciler
        self.metrics = metrics
        self.health = health
        loop = settings.reconciliation
        self.schedule = Schedule(
            interval=loop.interval_seconds,
            jitter_percent=loop.jitter_percent,
            backoff_initial=loop.failure_backoff_initial_seconds,
            backoff_max=loop.failure_backoff_max_seconds,
        )
        self.queue: RoomQueue[RunRequest] = RoomQueue(self._execute, parallel=loop.parallel_rooms)
        self.rooms: dict[str, RoomView] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._phase_marks: dict[str, float] = {}
        self._managed: set[str] = set()
        self._stalled: set[str] = set()
        audit.observers.append(self._time_phase)
        self.seed_root = settings.seed_root.resolve()

    # Life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every room from the store, resume interrupted runs, start the loop."""
        for record in await self.store.list_rooms():
            view = RoomView(
                room_id=record.room_id,
                managed=record.managed,
                spec=RoomSpec.model_validate(record.spec) if record.spec else None,
                base_dir=Path(record.base_dir) if record.base_dir else self.seed_root,
                confirmed=record.confirmed,
                revision=record.revision,
                last_reconcile=record.last_reconcile,
                last_result=record.last_result,
                cycles_since_converged=record.cycles_since_converged,
                conditions=record.conditions,
            )
            self.rooms[record.room_id] = view
            self._update_gauges(view)
            if view.managed:
                self.schedule.after_run(view.room_id)
        await self._resume()
        self._update_gauges()
        self._loop_task = asyncio.create_task(self.schedule.run(self._on_due), name="reconcile-loop")

    async def _resume(self) -> None:
        latest: dict[str, RunRecord] = {}
        for run in await self.store.unfinished_runs():
            if (older := latest.get(run.room_id)) is not None:
                await self.store.update_run(
                    older.correlation_id, status="superseded", superseded_by=run.correlation_id
                )
            latest[run.room_id] = run
        for run in latest.values():
            log.info("resuming interrupted run", room_id=run.room_id, correlation_id=run.correlation_id)
            request = RunRequest(
                correlation_id=run.correlation_id,
                room_id=run.room_id,
                trigger=run.trigger,
                spec=RoomSpec.model_validate(run.spec) if run.spec else None,
                base_dir=Path(run.base_dir) if run.base_dir else self.seed_root,
                confirm=run.confirm,
                actor=run.actor,
            )
            self.rooms.setdefault(run.room_id, RoomView(room_id=run.room_id))
            self.schedule.remove(run.room_id)
            await self._audit(
                "run.resumed",
                run.room_id,
                run.correlation_id,
                actor=run.actor,
                spec_version=request.spec.metadata.version if request.spec else None,
                type_="command",
                metadata={"interruptedWhile": run.status},
            )
            self.queue.submit(run.room_id, request)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self.queue.close()

    # Requests ----------------------------------------------------------------------------------------

    async def apply(
        self, spec: RoomSpec, *, base_dir: Path | None = None, confirm: bool = False, actor: str | None = None
    ) -> tuple[RunRequest, bool]:
        """Accept a spec durably and run it now (True) or after the room's current run (False)."""
        request = RunRequest(
            correlation_id=str(uuid.uuid4()),
            room_id=spec.room_id,
            trigger="apply",
            spec=spec,
            base_dir=base_dir or self.seed_root,
            confirm=confirm,
            actor=actor,
        )
        await self._record_accepted(request)
        return request, await self._submit(request)

    async def reconcile_now(self, room_id: str, *, actor: str | None = None) -> RunRequest | None:
        """Run a managed room's desired spec as soon as the room is free; None for an unmanaged room."""
        view = self.rooms.get(room_id)
        if view is None or not view.managed:
            return None
        pending = self.queue.pending(room_id)
        if pending is not None and pending.durable:
            return pending
        request = RunRequest(
            correlation_id=str(uuid.uuid4()), room_id=room_id, trigger="reconcile", actor=actor
        )
        await self._record_accepted(request)
        await self._submit(request)
        return request

    async def dry_run(
        self, spec: RoomSpec, *, base_dir: Path | None = None, confirm: bool = False, actor: str | None = None
    ) -> RunResult:
        """Plan and check a spec without writing; dry runs never wait for the room's queue."""
        result = await self.reconciler.reconcile(
            spec,
            seed_root=base_dir or self.seed_root,
            dry_run=True,
            confirm=confirm,
            correlation_id=str(uuid.uuid4()),
            actor=actor,
            previous=self._previous(spec.room_id),
        )
        await self.store.add_run(
            RunRecord(
                correlation_id=result.correlation_id,
                room_id=spec.room_id,
                trigger="apply",
                status="succeeded" if result.success else "failed",
                created_at=result.started_at,
                dry_run=True,
                confirm=confirm,
                actor=actor,
                spec=spec.to_wire(),
                result=result.model_dump(mode="json", by_alias=True),
                finished_at=utcnow(),
            )
        )
        return result

    async def unmanage(self, room_id: str, *, actor: str | None = None) -> bool:
        """Stop reconciling a room (nothing is removed from the room server)."""
        view = self.rooms.get(room_id)
        if view is None or not view.managed:
            return False
        view.managed = False
        self.schedule.remove(room_id)
        await self.store.unmanage(room_id)
        await self._audit("room.unmanaged", room_id, str(uuid.uuid4()), actor=actor, type_="command")
        self._update_gauges(view)
        return True

    def on_room_event(self, room_id: str) -> None:
        """The room server reported a change in `room_id`: reconcile it now (drift correction)."""
        view = self.rooms.get(room_id)
        if view is None or not view.managed:
            return
        if self.queue.busy(room_id):
            request = RunRequest(correlation_id=str(uuid.uuid4()), room_id=room_id, trigger="event")
            self.queue.submit(room_id, request, wins=lambda _: False)
        else:
            self.schedule.wake(room_id)

    def _on_due(self, room_id: str) -> None:
        view = self.rooms.get(room_id)
        if view is None or not view.managed or self.queue.busy(room_id):
            return
        self.queue.submit(
            room_id, RunRequest(correlation_id=str(uuid.uuid4()), room_id=room_id, trigger="loop")
        )
        self._update_gauges()

    async def _record_accepted(self, request: RunRequest) -> None:
        await self.store.add_run(
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
            )
        )

    async def _submit(self, request: RunRequest) -> bool:
        submitted = self.queue.submit(request.room_id, request)
        old = submitted.superseded
        if old is not None:
            if old.durable:
                await self.store.update_run(
                    old.correlation_id, status="superseded", superseded_by=request.correlation_id
                )
                await self._audit(
                    "run.superseded",
                    request.room_id,
                    old.correlation_id,
                    actor=request.actor,
                    metadata={"supersededBy": request.correlation_id},
                )
            old.done.set_result(None)
        if not submitted.started:
            await self._audit("run.queued", request.room_id, request.correlation_id, actor=request.actor)
        self._update_gauges()
        return submitted.started

    # Running -----------------------------------------------------------------------------------------

    async def _execute(self, request: RunRequest) -> None:
        view = self.rooms.setdefault(request.room_id, RoomView(room_id=request.room_id))
        spec = request.spec or view.spec
        if spec is None or (request.spec is None and not view.managed):
            if request.durable:
                await self.store.update_run(
                    request.correlation_id, status="failed", result={"errors": ["the room is not managed"]}
                )
            request.done.set_result(None)
            return
        base_dir = request.base_dir if request.spec is not None else view.base_dir
        # Runs of the stored spec keep its confirmation: converging towards a confirmed spec needs no
        # second confirmation (the kick and delete limits still apply to every run).
        confirm = request.confirm if request.spec is not None else view.confirmed
        view.is_reconciling, view.current_phase = True, Phase.PLANNING.value
        view.conditions = self._conditions(view, reconciling=True)
        if request.durable:
            await self.store.update_run(request.correlation_id, status="running")
        self.metrics.attempts.inc()
        self.metrics.active.inc()
        self._update_gauges()
        quiet = not request.durable
        if quiet:
            self.audit.hold(request.correlation_id)
        started = self._phase_marks[request.correlation_id] = time.perf_counter()

        def progress(phase: str, done: int, total: int) -> None:
            view.current_phase = phase

        try:
            with bound_contextvars(correlation_id=request.correlation_id, room_id=request.room_id):
                result = await self.reconciler.reconcile(
                    spec,
                    seed_root=base_dir or self.seed_root,
                    confirm=confirm,
                    correlation_id=request.correlation_id,
                    actor=request.actor,
                    progress=progress,
                    previous=self._previous(request.room_id),
                )
        except asyncio.CancelledError:
            self.metrics.active.dec()
            self._phase_marks.pop(request.correlation_id, None)
            if quiet:
                await self.audit.release(request.correlation_id, keep=True)
            view.is_reconciling, view.current_phase = False, None
            raise
        except Exception as exc:  # an engine bug must not leave the run "running" forever
            log.exception("reconcile raised", room_id=request.room_id, correlation_id=request.correlation_id)
            result = RunResult(
                success=False,
                correlation_id=request.correlation_id,
                room_id=request.room_id,
                spec_version=spec.metadata.version,
                phase=Phase.PLANNING,
                code=RunCode.INTERNAL_ERROR,
                errors=[f"{type(exc).__name__}: {exc}"],
                started_at=utcnow(),
            )
        self.metrics.active.dec()
        self.metrics.duration.observe(time.perf_counter() - started)
        self._phase_marks.pop(request.correlation_id, None)
        changed = has_changes(result)
        if quiet:
            await self.audit.release(request.correlation_id, keep=changed or not result.success)
        await self._settle(request, view, spec, base_dir, result, changed=changed)
        request.done.set_result(result)

    async def _settle(
        self,
        request: RunRequest,
        view: RoomView,
        spec: RoomSpec,
        base_dir: Path | None,
        result: RunResult,
        *,
        changed: bool,
    ) -> None:
        """Bookkeeping after a run: counters, conditions, desired spec, store, metrics, next due time."""
        body = result.model_dump(mode="json", by_alias=True)
        converged = result.success and result.converged is not False and not result.remaining
        view.cycles_since_converged = 0 if converged else view.cycles_since_converged + 1
        view.failures = 0 if result.success else view.failures + 1
        view.is_reconciling, view.current_phase = False, None
        view.last_reconcile, view.last_result = utcnow(), body
        (self.metrics.successes if result.success else self.metrics.failures).inc()
        if result.code is RunCode.GUARDRAILS_EXCEEDED:
            self.metrics.guardrail_refusals.inc()
        if request.trigger in ("loop", "event") and changed:
            self.metrics.drift.inc()
        self.health.observe_run(result.code, result.errors)
        if request.trigger == "apply" and reached_apply(result):
            view.managed, view.spec, view.base_dir, view.confirmed = True, spec, base_dir, request.confirm
            view.revision = await self.store.set_desired(
                view.room_id,
                spec.to_wire(),
                spec_version=spec.metadata.version,
                base_dir=str(base_dir) if base_dir else None,
                confirmed=request.confirm,
                correlation_id=result.correlation_id,
                actor=request.actor,
                diff=body.get("diff"),
            )
            await self._audit(
                "spec.accepted",
                view.room_id,
                result.correlation_id,
                actor=request.actor,
                spec_version=spec.metadata.version,
                type_="command",
                metadata={"revision": str(view.revision)},
            )
        before = view.conditions
        view.conditions = self._conditions(view, reconciling=False)
        if request.durable or changed or not result.success or _settled(before) != _settled(view.conditions):
            # A loop run that found a converged room and changed nothing is not worth a store write.
            await self.store.save_status(
                view.room_id,
                conditions=view.conditions,
                cycles_since_converged=view.cycles_since_converged,
                last_result=body,
            )
        status: RunStatus = "succeeded" if result.success else "failed"
        if request.durable:
            await self.store.update_run(request.correlation_id, status=status, result=body)
        elif changed or not result.success:
            await self.store.add_run(
                RunRecord(
                    correlation_id=result.correlation_id,
                    room_id=view.room_id,
                    trigger=request.trigger,
                    status=status,
                    created_at=result.started_at,
                    result=body,
                    finished_at=utcnow(),
                )
            )
        if view.managed:
            self.schedule.after_run(view.room_id, failures=view.failures)
        self._update_gauges(view)
        if view.stalled and ("Stalled", "True") not in _settled(before):
            await self._audit(
                "room.stalled",
                view.room_id,
                result.correlation_id,
                spec_version=spec.metadata.version,
                metadata={"cyclesSinceConverged": str(view.cycles_since_converged)},
            )

    def _time_phase(self, entry: AuditEntry) -> None:
        """Phase durations from the engine's phase markers (`reconcile.planning` ends PLANNING, ...)."""
        phase = PHASE_MARKERS.get(entry.action)
        started = self._phase_marks.get(entry.correlation_id)
        if phase is None or started is None:
            return
        now = time.perf_counter()
        self.metrics.phase_duration.labels(phase=phase).observe(now - started)
        self._phase_marks[entry.correlation_id] = now

    def _previous(self, room_id: str) -> RoomSpec | None:
        view = self.rooms.get(room_id)
        return view.spec if view is not None and view.managed else None

    def _conditions(self, view: RoomView, *, reconciling: bool) -> list[dict[str, Any]]:
        result = view.last_result or {}
        limit = self.settings.reconciliation.max_cycles_until_converged
        ready = bool(result) and bool(result.get("success")) and view.cycles_since_converged == 0
        if not result:
            ready_reason, ready_message = "NeverReconciled", "no run has finished yet"
        elif ready:
            ready_reason, ready_message = "Converged", "the room matches its spec"
        else:
            ready_reason = str(result.get("code") or "NotConverged")
            ready_message = "; ".join(result.get("errors") or result.get("remaining") or ["not converged"])
        stalled = view.cycles_since_converged >= limit
        return [
            _condition(view.conditions, "Ready", ready, ready_reason, ready_message),
            _condition(
                view.conditions, "Reconciling", reconciling, "RunInProgress" if reconciling else "Idle", ""
            ),
            _condition(
                view.conditions,
                "Stalled",
                stalled,
                "MaxCyclesExceeded" if stalled else "Progressing",
                f"{view.cycles_since_converged} runs without converging (limit {limit})",
            ),
        ]

    async def _audit(
        self,
        action: str,
        room_id: str,
        correlation_id: str,
        *,
        actor: str | None = None,
        spec_version: int | None = None,
        type_: Literal["event", "command"] = "event",
        metadata: dict[str, str] | None = None,
    ) -> None:
        view = self.rooms.get(room_id)
        version = (
            spec_version
            if spec_version is not None
            else (view.spec.metadata.version if view and view.spec else 0)
        )
        await self.audit.record(
            AuditEntry(
                type=type_,
                action=action,
                correlation_id=correlation_id,
                operator_version=self.settings.version,
                spec_version=version,
                room_id=room_id,
                actor=actor,
                metadata=metadata or {},
            )
        )

    def _update_gauges(self, view: RoomView | None = None) -> None:
        """Refresh the gauges, counting `view` anew (counts are kept per room, never recounted)."""
        if view is not None:
            (self._managed.add if view.managed else self._managed.discard)(view.room_id)
            (self._stalled.add if view.managed and view.stalled else self._stalled.discard)(view.room_id)
        self.health.stalled_rooms = len(self._stalled)
        self.metrics.managed_rooms.set(len(self._managed))
        self.metrics.stalled_rooms.set(len(self._stalled))
        self.metrics.queued.set(self.queue.queued)
        self.metrics.health.set(int(self.health.status))

    # Views -------------------------------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Wait until no room is running or pending (tests, `roomop up`)."""
        await self.queue.join()
