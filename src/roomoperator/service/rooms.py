"""The room registry: the live view of every room the operator knows, its conditions, and the counts of
managed and stalled rooms kept as rooms change (never recounted).

Pages of rooms (`GET /status`, `GET /rooms`) come from the room ids kept sorted as rooms are added: a page
costs a binary search and the page itself, never a pass over every room.

Views are built from store records by `view_from_record` (start-up) and changed only through their
methods here and in the controller; each keeps its serialised status until a field changes, so
`GET /status` joins ready-made JSON.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roomoperator.model.audit import utcnow
from roomoperator.model.results import Phase, RunResult
from roomoperator.service.schemas import Condition, ConditionType, RoomDetail, RoomStatus, RoomSummary
from roomoperator.spec.models import RoomSpec
from roomoperator.store.records import RoomRecord, SpecVersion


def stored_spec(
    wire: dict[str, Any] | None, base_dir: str | None, *, seed_root: Path
) -> tuple[RoomSpec | None, Path]:
    """A spec and its seed folder as the store keeps them (rooms and runs alike) back in typed form."""
    return (RoomSpec.model_validate(wire) if wire else None), (Path(base_dir) if base_dir else seed_root)


@dataclass(frozen=True)
class Pending:
    """An accepted revision no run has got past the guardrails with yet, because none could read or
    reach the room (`runs.undecided`): the room's runs go towards it, with backoff, until one decides
    (it becomes desired, or the guardrails refuse it), a newer revision comes, or the room is
    unmanaged. Until then the desired spec is the older one, but no run converges to it."""

    spec: RoomSpec
    base_dir: Path | None
    confirmed: bool
    revision: int


@dataclass
class RoomView:
    """The live status of one room: desired spec, run state, conditions, convergence count.

    Its serialised status is kept until a field is assigned again (`status_bytes`). Fields are replaced,
    never mutated in place.
    """

    room_id: str
    managed: bool = False
    spec: RoomSpec | None = None
    base_dir: Path | None = None
    confirmed: bool = False
    revision: int = 0
    """The revision of the desired spec."""
    latest_revision: int = 0
    """The room's latest accepted revision (desired, or queued, superseded or refused since)."""
    latest: SpecVersion | None = None
    """The revision new specs are judged against (None: none, or the room was unmanaged since)."""
    pending: Pending | None = None
    owner: str | None = None
    """The replica that owns the room (replicas only; set by `owned_by`)."""
    is_reconciling: bool = False
    current_phase: str | None = None
    last_reconcile: dt.datetime | None = None
    last_result: RunResult | None = None
    """The last run's result without its plan (about 25 KiB a room of 20 entities, kept for every room;
    `GET /runs/{correlationId}` has the whole result)."""
    cycles_since_converged: int = 0
    failures: int = 0
    conditions: tuple[Condition, ...] = ()
    settled_tag: str | None = None
    """The `ETag` of the room's state when its last run left it settled (`runs.left_settled`, towards the
    desired revision): while the room server still answers it `304`, a loop run would plan nothing."""
    _status: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "_status":
            object.__setattr__(self, "_status", None)

    @property
    def spec_version(self) -> int | None:
        return self.spec.metadata.version if self.spec else None

    @property
    def wanted(self) -> bool:
        """Do runs go towards a spec (a desired one, or a pending one)?"""
        return self.managed or self.pending is not None

    @property
    def stalled(self) -> bool:
        return self.condition(ConditionType.STALLED)

    @property
    def rolled_back_at(self) -> int | None:
        """The room's revision after its last run failed and rolled back (None: it did not, or the room
        could not be read after it). Until the room leaves that revision, the loop and room-server events
        do not retry the desired revision; a new spec or an explicit reconcile does."""
        result = self.last_result
        if result is None or result.phase is not Phase.ROLLBACK:
            return None
        return result.room_revision

    def condition(self, kind: ConditionType) -> bool:
        return any(c.type is kind and c.status == "True" for c in self.conditions)

    def status(self) -> RoomStatus:
        diff = self.last_result.diff if self.last_result else None
        return RoomStatus(
            room_id=self.room_id,
            current_phase=self.current_phase,
            is_reconciling=self.is_reconciling,
            pending_diff=diff,
            blocked=list(diff.blocked) if diff else [],
            last_reconcile=self.last_reconcile,
            cycles_since_converged=self.cycles_since_converged,
            managed=self.managed,
            spec_version=self.spec_version,
            revision=self.revision,
            conditions=self.conditions,
            pending_revision=self.pending.revision if self.pending else None,
            owner=self.owner,
        )

    def owned_by(self, owner: str | None) -> RoomView:
        """The view, its owner set (the serialised status is kept when the owner is the same)."""
        if owner != self.owner:
            self.owner = owner
        return self

    def status_bytes(self) -> bytes:
        """`status()` as JSON (UTC timestamps written `...Z`), serialised once per change."""
        if self._status is None:
            self._status = self.status().model_dump_json(by_alias=True).encode()
        return self._status

    def summary(self) -> RoomSummary:
        return RoomSummary(
            room_id=self.room_id,
            managed=self.managed,
            spec_version=self.spec_version,
            revision=self.revision,
            conditions=self.conditions,
            status=self.status(),
            owner=self.owner,
        )

    def detail(self) -> RoomDetail:
        return RoomDetail(
            **dict(self.summary()),
            spec=self.spec.to_wire() if self.spec else None,
            seed_root=str(self.base_dir) if self.base_dir else None,
            last_run=self.last_result,
            latest_revision=self.latest_revision,
        )

    # Run transitions ---------------------------------------------------------------------------------

    def run_started(self, *, limit: int) -> None:
        self.is_reconciling, self.current_phase = True, Phase.PLANNING.value
        self.conditions = conditions(self, reconciling=True, limit=limit)

    def run_interrupted(self) -> None:
        self.is_reconciling, self.current_phase = False, None

    def run_finished(self, result: RunResult, *, limit: int) -> None:
        """Counters, last result and conditions after `result`."""
        converged = result.success and result.converged is not False and not result.remaining
        self.cycles_since_converged = 0 if converged else self.cycles_since_converged + 1
        self.failures = 0 if result.success else self.failures + 1
        self.is_reconciling, self.current_phase = False, None
        self.last_reconcile, self.last_result = utcnow(), _without_plan(result)
        self.conditions = conditions(self, reconciling=False, limit=limit)

    def desire(self, spec: RoomSpec, *, base_dir: Path | None, confirmed: bool, revision: int) -> None:
        """`spec` is now the room's desired state (revision `revision` in the store)."""
        self.managed, self.spec, self.base_dir, self.confirmed = True, spec, base_dir, confirmed
        self.revision, self.pending = revision, None


def view_from_record(record: RoomRecord, *, seed_root: Path, latest: SpecVersion | None) -> RoomView:
    """The view of a room as the store last saw it, with its latest revision `latest`."""
    spec, base_dir = stored_spec(record.spec, record.base_dir, seed_root=seed_root)
    pending = None
    if latest is not None and record.pending_revision == latest.revision:
        pending_spec, pending_dir = stored_spec(latest.spec, latest.base_dir, seed_root=seed_root)
        assert pending_spec is not None
        pending = Pending(pending_spec, pending_dir, latest.confirmed, latest.revision)
    return RoomView(
        room_id=record.room_id,
        managed=record.managed,
        spec=spec,
        base_dir=base_dir,
        confirmed=record.confirmed,
        revision=record.revision,
        latest_revision=record.latest_revision,
        # An unmanaged room (never desired, or `DELETE`d) takes any spec, unless a revision newer than
        # its last desired one waits (its first run failed before APPLY).
        latest=latest if record.managed or record.latest_revision > record.revision else None,
        pending=pending,
        last_reconcile=record.last_reconcile,
        last_result=_without_plan(RunResult.model_validate(record.last_result))
        if record.last_result
        else None,
        cycles_since_converged=record.cycles_since_converged,
        conditions=tuple(Condition.model_validate(c) for c in record.conditions),
    )


def _without_plan(result: RunResult) -> RunResult:
    return result if result.plan is None else result.model_copy(update={"plan": None})


def _condition(
    previous: tuple[Condition, ...], kind: ConditionType, status: bool, reason: str, message: str
) -> Condition:
    value = "True" if status else "False"
    old = next((c for c in previous if c.type is kind), None)
    if old is not None and (old.status, old.reason, old.message) == (value, reason, message):
        return old  # unchanged (most runs of a converged room): no new object, no new time
    since = old.last_transition_time if old and old.status == value else utcnow()
    return Condition(type=kind, status=value, reason=reason, message=message, last_transition_time=since)


def conditions(view: RoomView, *, reconciling: bool, limit: int) -> tuple[Condition, ...]:
    """Ready, Reconciling and Stalled for `view` (`limit`: runs without converging before Stalled)."""
    result = view.last_result
    ready = result is not None and result.success and view.cycles_since_converged == 0
    if result is None:
        ready_reason, ready_message = "NeverReconciled", "no run has finished yet"
    elif ready:
        ready_reason, ready_message = "Converged", "the room matches its spec"
    else:
        ready_reason = str(result.code or "NotConverged")
        ready_message = "; ".join(result.errors or result.remaining or ["not converged"])
    rolled_back = view.rolled_back_at is not None
    stalled = rolled_back or view.cycles_since_converged >= limit
    if rolled_back:
        stalled_reason, stalled_message = (
            "RolledBack",
            (
                f"revision {view.revision} failed and was rolled back; it is not retried until the spec or"
                f" the room changes, or a reconcile is asked for (POST /rooms/{view.room_id}/reconcile)"
            ),
        )
    else:
        stalled_reason = "MaxCyclesExceeded" if stalled else "Progressing"
        stalled_message = f"{view.cycles_since_converged} runs without converging (limit {limit})"
    previous = view.conditions
    return (
        _condition(previous, ConditionType.READY, ready, ready_reason, ready_message),
        _condition(
            previous, ConditionType.RECONCILING, reconciling, "RunInProgress" if reconciling else "Idle", ""
        ),
        _condition(previous, ConditionType.STALLED, stalled, stalled_reason, stalled_message),
    )


def settled(view: RoomView) -> list[tuple[ConditionType, str]]:
    """The conditions without the transient Reconciling one, to tell whether a run changed anything."""
    return [(c.type, c.status) for c in view.conditions if c.type is not ConditionType.RECONCILING]


@dataclass(frozen=True)
class Page:
    """Rooms in room-id order after a cursor; `next_cursor` continues after them (None: the last page)."""

    views: list[RoomView]
    next_cursor: str | None
    total: int


class RoomRegistry:
    """Every known room by id, with the managed and stalled counts kept up to date by `recount`."""

    def __init__(self) -> None:
        self._views: dict[str, RoomView] = {}
        self._order: list[str] = []
        """Every room id, sorted (rooms are never dropped from the registry)."""
        self._managed: set[str] = set()
        self._stalled: set[str] = set()

    def page(self, *, after: str | None, limit: int) -> Page:
        """Up to `limit` rooms whose id sorts after `after` (from the first when None)."""
        start = bisect.bisect_right(self._order, after) if after is not None else 0
        ids = self._order[start : start + limit]
        more = start + len(ids) < len(self._order)
        return Page([self._views[i] for i in ids], ids[-1] if more and ids else None, len(self._order))

    def __iter__(self) -> Iterator[RoomView]:
        return iter(self._views.values())

    def __len__(self) -> int:
        return len(self._views)

    def get(self, room_id: str) -> RoomView | None:
        return self._views.get(room_id)

    def managed(self, room_id: str) -> RoomView | None:
        """The view of `room_id` when the operator manages it."""
        view = self._views.get(room_id)
        return view if view is not None and view.managed else None

    def ensure(self, room_id: str) -> RoomView:
        """The view of `room_id`, created (unmanaged, never reconciled) when the room is new."""
        view = self._views.get(room_id)
        if view is None:
            view = RoomView(room_id=room_id)
            self._insert(view)
        return view

    def add(self, view: RoomView) -> None:
        self._insert(view)
        self.recount(view)

    def _insert(self, view: RoomView) -> None:
        if view.room_id not in self._views:
            bisect.insort(self._order, view.room_id)
        self._views[view.room_id] = view

    def recount(self, view: RoomView) -> None:
        """Count `view` anew in the managed and stalled sets."""
        (self._managed.add if view.managed else self._managed.discard)(view.room_id)
        (self._stalled.add if view.managed and view.stalled else self._stalled.discard)(view.room_id)

    @property
    def managed_count(self) -> int:
        return len(self._managed)

    @property
    def stalled_count(self) -> int:
        return len(self._stalled)
