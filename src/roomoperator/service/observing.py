"""What the controller tells the rest of the operator about runs and rooms, as typed events, and the
observers that turn them into metrics, health, audit entries and webhook notifications.

The controller publishes an event (`RunStarted`, `PhaseStarted`, `RunFinished`, `SpecAccepted`, ...)
and never calls a metric, the health monitor, the audit log or the notifier itself. Phase durations
come from the engine's progress callback (`PhaseStarted` at each phase start), not from audit entries. Every
`Observers` also logs (`LogObserver`): one line per run that changed a room, per failure, per stall.
Who changed a room (`RoomChangedBy`, from the room server's event log) reaches the notifications
synchronously, as phase starts reach the metrics: the event follower's callback cannot await.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog

from roomoperator.model.audit import AuditEntry
from roomoperator.model.codes import NotificationKind, RunCode
from roomoperator.model.results import RunResult
from roomoperator.notifications.delivery import Notifier
from roomoperator.notifications.messages import Notice
from roomoperator.service.auditing import AuditLog
from roomoperator.service.changers import Changers
from roomoperator.service.health import HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.service.rooms import RoomRegistry
from roomoperator.service.runs import RunRequest
from roomoperator.store.records import RunStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RunStarted:
    """A run leaves the queue and starts planning."""

    request: RunRequest


@dataclass(frozen=True)
class PhaseStarted:
    """The engine reported the start of `phase` (`progress(phase, 0, total)`)."""

    request: RunRequest
    phase: str
    at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class RunFinished:
    request: RunRequest
    result: RunResult
    changed: bool
    """The run found the room different from its spec."""


@dataclass(frozen=True)
class RoomUnchanged:
    """A loop run was not needed: the room server answered `304` for the state its last run left settled."""

    request: RunRequest


@dataclass(frozen=True)
class RunCancelled:
    """The operator stopped while the run was in flight (it resumes at the next start if durable)."""

    request: RunRequest


@dataclass(frozen=True)
class RunQueued:
    """A caller's request waits behind the room's current run."""

    request: RunRequest


@dataclass(frozen=True)
class RunSuperseded:
    """A later request for the same room took the pending slot of `old`."""

    old: RunRequest
    by: RunRequest


@dataclass(frozen=True)
class RunResumed:
    """A run accepted before a crash or restart is queued again at start-up."""

    request: RunRequest
    interrupted_while: RunStatus


@dataclass(frozen=True)
class SpecAccepted:
    """The run's spec became the room's desired spec (history `revision`)."""

    request: RunRequest
    result: RunResult
    revision: int


@dataclass(frozen=True)
class RoomStalled:
    """The room turned Stalled: too many runs in a row without converging."""

    result: RunResult
    cycles_since_converged: int


@dataclass(frozen=True)
class RoomUnmanaged:
    """A caller stopped the operator managing the room."""

    room_id: str
    actor: str | None
    correlation_id: str


@dataclass(frozen=True)
class RoomChangedBy:
    """The room server logged event `seq` of the room, made by `actor` (not the operator itself), and it
    is news to the room's runs."""

    room_id: str
    actor: str
    seq: int | None


@dataclass(frozen=True)
class SourceSyncFailed:
    """A GitOps source could not be read, or declared specs that were invalid or refused (new errors)."""

    source: str
    errors: tuple[str, ...]
    correlation_id: str


RunEvent = (
    RunStarted
    | PhaseStarted
    | RunFinished
    | RoomUnchanged
    | RunCancelled
    | RunQueued
    | RunSuperseded
    | RunResumed
    | SpecAccepted
    | RoomStalled
    | RoomUnmanaged
    | SourceSyncFailed
)


class Observer(Protocol):
    async def observe(self, event: RunEvent) -> None: ...


class MetricsObserver:
    """Run counters, run and phase durations, drift, guardrail refusals and loop runs not needed."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self.metrics = metrics
        self._started: dict[str, float] = {}
        self._phases: dict[str, tuple[str, float]] = {}

    def phase_started(self, event: PhaseStarted) -> None:
        """Synchronous: the engine's progress callback cannot await."""
        self._end_phase(event.request.correlation_id, event.at)
        self._phases[event.request.correlation_id] = (event.phase, event.at)

    def _end_phase(self, correlation_id: str, now: float) -> None:
        current = self._phases.pop(correlation_id, None)
        if current is not None:
            phase, since = current
            self.metrics.phase_duration.labels(phase=phase).observe(now - since)

    async def observe(self, event: RunEvent) -> None:
        m = self.metrics
        match event:
            case RunStarted(request=request):
                m.attempts.inc()
                m.active.inc()
                self._started[request.correlation_id] = time.perf_counter()
            case RoomUnchanged():
                m.unchanged.inc()
            case RunCancelled(request=request):
                m.active.dec()
                self._started.pop(request.correlation_id, None)
                self._phases.pop(request.correlation_id, None)
            case RunFinished(request=request, result=result, changed=changed):
                now = time.perf_counter()
                m.active.dec()
                m.duration.observe(now - self._started.pop(request.correlation_id, now))
                self._end_phase(request.correlation_id, now)
                (m.successes if result.success else m.failures).inc()
                if result.code is RunCode.GUARDRAILS_EXCEEDED:
                    m.guardrail_refusals.inc()
                if request.trigger in ("loop", "event") and changed:
                    m.drift.inc()


class HealthObserver:
    """A run's failure code tells the health monitor whether the room server answered."""

    def __init__(self, health: HealthMonitor) -> None:
        self.health = health

    async def observe(self, event: RunEvent) -> None:
        if isinstance(event, RunFinished):
            self.health.observe_run(event.result.code, event.result.errors)
        elif isinstance(event, RoomUnchanged):  # the room server answered, and took our token
            self.health.observe_run(None, ())


class LogObserver:
    """One log line per run that changed its room (`drift corrected` when the loop or a room event started
    it), per failed run and per room turning Stalled; a run that found nothing to do says nothing."""

    async def observe(self, event: RunEvent) -> None:
        match event:
            case RunFinished(request=request, result=result, changed=changed):
                fields = {
                    "room_id": result.room_id,
                    "correlation_id": result.correlation_id,
                    "trigger": request.trigger,
                    "spec_version": result.spec_version,
                    "applied": len(result.applied),
                    "failed": len(result.failed),
                    "converged": result.converged,
                }
                if not result.success:
                    log.warning("run failed", code=result.code, errors=list(result.errors[:3]), **fields)
                elif changed and result.applied:
                    drift = request.trigger in ("loop", "event")
                    log.info("drift corrected" if drift else "room changed", **fields)
            case RoomStalled(result=result, cycles_since_converged=cycles):
                log.warning(
                    "room stalled",
                    room_id=result.room_id,
                    correlation_id=result.correlation_id,
                    cycles_since_converged=cycles,
                    errors=list(result.errors[:3]),
                )


class AuditObserver:
    """The service's own audit entries (runs queued, superseded, resumed; specs accepted; rooms stalled or
    unmanaged; sources that failed to sync, with no room id), and the holding back of a quiet loop run's
    phase markers until it turns out to matter.

    An entry without a spec version of its own carries the room's desired one (0 for a new room).
    """

    def __init__(self, audit: AuditLog, rooms: RoomRegistry, *, operator_version: str) -> None:
        self.audit = audit
        self.rooms = rooms
        self.operator_version = operator_version

    async def observe(self, event: RunEvent) -> None:
        match event:
            case RunStarted(request=request) if not request.durable:
                self.audit.hold(request.correlation_id)
            case RunCancelled(request=request) if not request.durable:
                await self.audit.release(request.correlation_id, keep=True)
            case RunFinished(request=request, result=result, changed=changed) if not request.durable:
                await self.audit.release(request.correlation_id, keep=changed or not result.success)
            case RunQueued(request=request):
                await self._record("run.queued", request.room_id, request.correlation_id, actor=request.actor)
            case RunSuperseded(old=old, by=by) if old.durable:
                metadata = {"supersededBy": by.correlation_id}
                await self._record(
                    "run.superseded", old.room_id, old.correlation_id, actor=by.actor, metadata=metadata
                )
            case RunResumed(request=request, interrupted_while=status):
                await self._record(
                    "run.resumed",
                    request.room_id,
                    request.correlation_id,
                    actor=request.actor,
                    spec_version=request.spec.metadata.version if request.spec else None,
                    type_="command",
                    metadata={"interruptedWhile": status},
                )
            case SpecAccepted(request=request, result=result, revision=revision):
                await self._record(
                    "spec.accepted",
                    result.room_id,
                    result.correlation_id,
                    actor=request.actor,
                    spec_version=result.spec_version,
                    type_="command",
                    metadata={"revision": str(revision)},
                )
            case RoomStalled(result=result, cycles_since_converged=cycles):
                await self._record(
                    "room.stalled",
                    result.room_id,
                    result.correlation_id,
                    spec_version=result.spec_version,
                    metadata={"cyclesSinceConverged": str(cycles)},
                )
            case RoomUnmanaged(room_id=room_id, actor=actor, correlation_id=correlation_id):
                await self._record("room.unmanaged", room_id, correlation_id, actor=actor, type_="command")
            case SourceSyncFailed(source=source, errors=errors, correlation_id=correlation_id):
                metadata = {"source": source, "errors": "\n".join(errors)}
                await self._record("source.sync_failed", "", correlation_id, metadata=metadata)

    async def _record(
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
        if spec_version is None:
            view = self.rooms.get(room_id)
            spec_version = view.spec_version if view is not None else None
        await self.audit.record(
            AuditEntry(
                type=type_,
                action=action,
                correlation_id=correlation_id,
                operator_version=self.operator_version,
                spec_version=spec_version or 0,
                room_id=room_id,
                actor=actor,
                metadata=metadata or {},
            )
        )


class NotificationObserver:
    """The events that need a person, as webhook notifications (`notifications/`): a failed run, a
    guardrail refusal (with the diff it would have made), drift corrected (what was changed back), a room
    turning Stalled and converging again, a source that failed to sync.

    A drift notification names who changed the room (`changedBy`: the actors of the room-server events
    its run read, `changers.py`), where the room server's event log says."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._stalled: set[str] = set()
        self._changers = Changers()

    def room_changed(self, event: RoomChangedBy) -> None:
        """Synchronous: the event follower's callback cannot await."""
        self._changers.seen(event.room_id, event.actor, event.seq)

    async def observe(self, event: RunEvent) -> None:
        notice = self._notice(event)
        if notice is not None:
            await self.notifier.notify(notice)

    def _notice(self, event: RunEvent) -> Notice | None:
        match event:
            case RunFinished(request=request, result=result, changed=changed):
                room, correlation = result.room_id, result.correlation_id
                # A run that failed corrected nothing: who changed the room is for the next one.
                changed_by = self._changers.take(room, read_at=result.room_revision) if result.success else ()
                if result.code is RunCode.GUARDRAILS_EXCEEDED:
                    diff = result.diff.model_dump(by_alias=True, exclude_defaults=True) if result.diff else {}
                    details: dict[str, Any] = {"errors": list(result.errors), "wouldChange": diff}
                    summary = "; ".join(result.errors) or "the guardrails refused the plan"
                    return Notice(
                        NotificationKind.GUARDRAIL_REFUSED, room, summary, correlation, details=details
                    )
                if not result.success:
                    failed = [item.model_dump(mode="json") for item in result.failed]
                    details = {"code": result.code, "errors": list(result.errors), "failed": failed}
                    summary = f"run failed ({result.code}): " + "; ".join(
                        result.errors[:3] or [f.message for f in result.failed[:3]]
                    )
                    return Notice(NotificationKind.RUN_FAILED, room, summary, correlation, details=details)
                if result.converged and room in self._stalled:
                    self._stalled.discard(room)
                    return Notice(NotificationKind.ROOM_RECOVERED, room, "converged again", correlation)
                if changed and result.applied and request.trigger in ("loop", "event"):
                    details = {
                        "applied": list(result.applied),
                        "trigger": request.trigger,
                        "changedBy": list(changed_by),
                    }
                    summary = f"drift corrected: {', '.join(result.applied[:5])}"
                    if changed_by:
                        summary += f" (changed by {', '.join(changed_by)})"
                    return Notice(
                        NotificationKind.DRIFT_CORRECTED, room, summary, correlation, details=details
                    )
            case RoomStalled(result=result, cycles_since_converged=cycles):
                self._stalled.add(result.room_id)
                details = {"cyclesSinceConverged": cycles, "errors": list(result.errors[:10])}
                summary = f"not converged after {cycles} runs"
                return Notice(
                    NotificationKind.ROOM_STALLED,
                    result.room_id,
                    summary,
                    result.correlation_id,
                    details=details,
                )
            case SourceSyncFailed(source=source, errors=errors, correlation_id=correlation_id):
                summary = f"source {source} failed to sync: {errors[0]}"
                return Notice(
                    NotificationKind.SOURCE_FAILED,
                    "",
                    summary,
                    correlation_id,
                    source=source,
                    details={"errors": list(errors)},
                )
            case RoomUnmanaged(room_id=room_id):
                self._changers.forget(room_id)
        return None


class Observers:
    """Hands every event to every observer, in order, the `LogObserver` last."""

    def __init__(self, metrics: MetricsObserver, *others: Observer) -> None:
        self._metrics = metrics
        self._all: tuple[Observer, ...] = (metrics, *others, LogObserver())
        self._notifications = [o for o in others if isinstance(o, NotificationObserver)]

    def phase_started(self, event: PhaseStarted) -> None:
        self._metrics.phase_started(event)

    def room_changed(self, room_id: str, actor: str, seq: int | None) -> None:
        """`actor` made event `seq` of the room, news to its runs (`RoomChangedBy`)."""
        event = RoomChangedBy(room_id, actor, seq)
        for observer in self._notifications:
            observer.room_changed(event)

    async def publish(self, event: RunEvent) -> None:
        for observer in self._all:
            await observer.observe(event)


class Gauges:
    """The gauges that describe the whole fleet, from counts kept as rooms change (no scan per run)."""

    def __init__(self, metrics: OperatorMetrics, health: HealthMonitor) -> None:
        self.metrics = metrics
        self.health = health

    def refresh(self, rooms: RoomRegistry, *, queued: int) -> None:
        self.health.stalled_rooms = rooms.stalled_count
        self.metrics.managed_rooms.set(rooms.managed_count)
        self.metrics.stalled_rooms.set(rooms.stalled_count)
        self.metrics.queued.set(queued)
        self.metrics.health.set(int(self.health.status))
