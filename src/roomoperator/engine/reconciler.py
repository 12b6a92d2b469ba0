"""The reconcile run: PLANNING -> PRE_CHECKS -> APPLY -> (ROLLBACK) -> VERIFY for one room and one spec.

PLANNING reads the room once and hashes the seed files (cached), then plans. PRE_CHECKS blocks what the
token's scopes do not allow and judges the plan with the guardrails; a dry run stops there. APPLY
re-reads and re-plans when the first read is older than the stale tolerance, then makes the changes
(entities, artifacts by dependency level, policies in one call, resources), each retried on transient
failures and rate-limited; one failure never stops the others. ROLLBACK (opt-in) undoes what the run
made when items failed. VERIFY reads the room again and lists what still differs.

A converged room costs one state read and no write (no VERIFY read either: the plan was empty). The
client reads an unchanged room conditionally (`304`, the same `ETag`); the last plan of each room is
kept and reused while the room's `ETag`, the spec and the seed files are the same, so an unchanged room
is not planned again. Run-level failures never raise: they come back
as a `RunResult` with a `code`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roomoperator.clients.errors import NotFound, RoomServerError, Unauthorized, Unreachable
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.applying import Applier, Done, Undo
from roomoperator.engine.hashing import HashCache
from roomoperator.engine.ratelimit import RateLimiter
from roomoperator.engine.retrying import Retrier, RetryFailed
from roomoperator.engine.seeding import SeedFiles
from roomoperator.model.audit import AuditEntry, AuditSink
from roomoperator.model.changes import Change, Kind, Op, Plan
from roomoperator.model.codes import BlockCode, RunCode
from roomoperator.model.observed import ObservedRoom
from roomoperator.model.results import ItemFailure, Phase, ReconcileDiff, RunResult
from roomoperator.model.seeds import LocalSeed
from roomoperator.planning.difflists import diff_lists
from roomoperator.planning.guardrails import check
from roomoperator.planning.ordering import apply_groups
from roomoperator.planning.planjson import plan_to_json
from roomoperator.planning.planner import plan_room, protected_names
from roomoperator.settings import OperatorSettings
from roomoperator.spec.models import RoomSpec

Progress = Callable[[str, int, int], None]

# Process-wide: a service reconciling many rooms resolves and hashes each unchanged seed file once.
SHARED_SEED_FILES = SeedFiles()

# Reference warning texts (operator.md Appendix C) per op.
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
AUDIT_ACTION: dict[Op, str] = {
    Op.JOIN: "entity.joined",
    Op.UPDATE: "entity.updated",
    Op.KICK: "entity.kicked",
    Op.SEED: "artifact.seeded",
    Op.RESEED: "artifact.seeded",
    Op.PROMOTE: "artifact.promoted",
    Op.DELETE_ARTIFACT: "artifact.deleted",
    Op.SET_POLICY: "policy.applied",
    Op.ENSURE_RESOURCE: "resource.ensured",
}
NOT_CONVERGED = "State not fully converged after reconciliation"
REFERENCE_SERVER = (
    "GET /room/{room_id}/state answered 404: the room server has no operator endpoints (the reference .NET"
    " server?); entity, policy, promote and delete changes are blocked as unsupported"
)


def _tell(progress: Progress | None, phase: Phase, *, total: int = 0) -> None:
    """Report that `phase` starts (`progress(phase, 0, total)`); APPLY then reports each change made."""
    if progress is not None:
        progress(str(phase), 0, total)


class RunAborted(Exception):
    """A run-level failure: the run stops and reports `code`."""

    def __init__(self, code: RunCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _unauthorized(error: RoomServerError) -> RunAborted:
    return RunAborted(RunCode.UNAUTHORIZED, f"Room server refused the operator's token: {error.message}")


def _label(change: Change) -> str:
    return f"{change.op}:{change.name}"


def _blocked_warning(change: Change) -> str:
    assert change.blocked is not None
    if change.blocked.code is BlockCode.SEED_FILE_MISSING and change.op in (Op.SEED, Op.RESEED):
        return change.blocked.message
    return f"Blocked {change.op} {change.name} ({change.blocked.code}): {change.blocked.message}"


@dataclass(frozen=True)
class _PlanMemo:
    """The inputs of a room's last plan (the observed room by its `ETag`, the specs by identity) and
    the plan."""

    etag: str
    spec: RoomSpec
    seeds: dict[str, LocalSeed]
    endpoints: bool
    previous: RoomSpec | None
    plan: Plan

    def fits(
        self,
        spec: RoomSpec,
        observed: ObservedRoom,
        seeds: dict[str, LocalSeed],
        *,
        endpoints: bool,
        previous: RoomSpec | None,
    ) -> bool:
        return (
            observed.etag == self.etag
            and spec is self.spec
            and previous is self.previous
            and endpoints == self.endpoints
            and seeds == self.seeds
        )


@dataclass
class _Run:
    """Mutable bookkeeping of one run."""

    spec: RoomSpec
    correlation_id: str
    actor: str | None
    result: RunResult
    started: float = field(default_factory=time.perf_counter)
    undos: list[Undo] = field(default_factory=list)
    aborted: RunAborted | None = None


class Reconciler:
    """Brings rooms to their spec through one room-server client."""

    def __init__(
        self,
        client: RoomServerClient,
        settings: OperatorSettings,
        *,
        audit: AuditSink | None = None,
        rate_limiter: RateLimiter | None = None,
        hash_cache: HashCache | None = None,
        retrier: Retrier | None = None,
        concurrency: int = 8,
    ) -> None:
        self.client = client
        self.settings = settings
        self.audit = audit
        self.limiter = rate_limiter or RateLimiter(settings.reconciliation.rate_limit_per_second)
        self.seed_files = SeedFiles(hash_cache=hash_cache) if hash_cache is not None else SHARED_SEED_FILES
        self.retrier = retrier or Retrier(settings.retry)
        self.concurrency = concurrency
        self._plans: dict[str, _PlanMemo] = {}
        self._rendered: dict[str, tuple[Plan, dict[str, Any], ReconcileDiff]] = {}

    # ---- entry point ---------------------------------------------------------------------------------

    async def reconcile(
        self,
        spec: RoomSpec,
        *,
        seed_root: Path,
        dry_run: bool = False,
        confirm: bool = False,
        correlation_id: str | None = None,
        actor: str | None = None,
        progress: Progress | None = None,
        previous: RoomSpec | None = None,
    ) -> RunResult:
        """Every phase for `spec`; `previous` (the last applied spec) protects its `protect: true` items."""
        requests_before = self.client.requests
        correlation_id = correlation_id or str(uuid.uuid4())
        run = _Run(
            spec=spec,
            correlation_id=correlation_id,
            actor=actor,
            result=RunResult(
                success=False,
                correlation_id=correlation_id,
                room_id=spec.room_id,
                spec_version=spec.metadata.version,
                phase=Phase.PLANNING,
                dry_run=dry_run,
                started_at=dt.datetime.now(dt.UTC),
            ),
        )
        try:
            await self._phases(
                run,
                seed_root=seed_root,
                dry_run=dry_run,
                confirm=confirm,
                progress=progress,
                previous=previous,
            )
        except RunAborted as abort:
            run.result.success = False
            run.result.code = abort.code
            run.result.errors.append(abort.message)
            await self._audit(
                run, "reconcile.failed", code=abort.code, error=abort.message, phase=run.result.phase
            )
        run.result.finished_at = dt.datetime.now(dt.UTC)
        run.result.duration = time.perf_counter() - run.started
        run.result.requests = self.client.requests - requests_before
        return run.result

    async def _phases(
        self,
        run: _Run,
        *,
        seed_root: Path,
        dry_run: bool,
        confirm: bool,
        progress: Progress | None,
        previous: RoomSpec | None,
    ) -> None:
        spec, result = run.spec, run.result
        _tell(progress, Phase.PLANNING)
        # Unchanged seed files are known from the caches at the cost of a few stat calls; otherwise they
        # are resolved and hashed on a worker thread while the room state is read.
        known = self.seed_files.known_seeds(spec, seed_root)
        if known is not None:
            seeds = known
            observed, endpoints, read_at = await self._read(spec.room_id)
        else:
            seeds_ready = asyncio.ensure_future(
                asyncio.to_thread(self.seed_files.local_seeds, spec, seed_root)
            )
            try:
                observed, endpoints, read_at = await self._read(spec.room_id)
            finally:
                seeds = await seeds_ready
        if not endpoints:
            result.warnings.append(REFERENCE_SERVER.format(room_id=spec.room_id))
        plan = self._plan(spec, observed, seeds, endpoints=endpoints, previous=previous)
        self._record_plan(run, plan)
        await self._audit(run, "reconcile.planning", changes=len(plan.changes), revision=observed.revision)
        result.phase = Phase.PRE_CHECKS
        _tell(progress, Phase.PRE_CHECKS)
        checked = await self._pre_checks(run, plan, observed, confirm=confirm)
        if checked is None:
            return
        plan = checked
        if dry_run:
            result.success = True
            result.partial_success = bool(plan.blocked)
            return
        if not plan.actionable:
            await self._finish_without_writes(run, plan)
            await self._audit(
                run, "reconcile.verify", converged=result.converged, remaining=len(result.remaining)
            )
            return
        # APPLY, after a re-read and re-plan when the first read is stale
        result.phase = Phase.APPLY
        _tell(progress, Phase.APPLY, total=len(plan.actionable))
        if time.monotonic() - read_at > self.settings.reconciliation.stale_tolerance_seconds:
            observed, endpoints, read_at = await self._read(spec.room_id)
            plan = self._plan(spec, observed, seeds, endpoints=endpoints, previous=previous)
            result.warnings.append("Room state was stale when APPLY started: re-read and re-planned")
            self._record_plan(run, plan)
            checked = await self._pre_checks(run, plan, observed, confirm=confirm)
            if checked is None:
                return
            plan = checked
        await self._apply(run, plan, observed, progress=progress)
        await self._audit(run, "reconcile.apply", applied=len(result.applied), failed=len(result.failed))
        if run.aborted is not None:
            raise run.aborted
        if result.failed and ("on-failure" in (self.settings.reconciliation.rollback, spec.spec.rollback)):
            result.phase = Phase.ROLLBACK
            _tell(progress, Phase.ROLLBACK, total=len(run.undos))
            await self._rollback(run)
        _tell(progress, Phase.VERIFY)
        await self._verify(run, spec, seeds, endpoints=endpoints, previous=previous)
        if result.phase is not Phase.ROLLBACK:
            result.phase = Phase.VERIFY

    # ---- PLANNING ------------------------------------------------------------------------------------

    async def _read(self, room_id: str) -> tuple[ObservedRoom, bool, float]:
        """The room state, whether the server has the operator endpoints, and when it was read."""
        try:
            observed = await self.client.get_state(room_id)
        except NotFound:
            # The contract answers an empty state for an unknown room: a 404 is a server without the
            # operator endpoints (the reference .NET server). Plan as for an empty room, blocking
            # what such a server cannot do.
            return ObservedRoom(room_id=room_id), False, time.monotonic()
        except Unauthorized as exc:
            raise _unauthorized(exc) from exc
        except Unreachable as exc:
            raise RunAborted(RunCode.ROOM_SERVER_UNREACHABLE, exc.message) from exc
        except RoomServerError as exc:
            raise RunAborted(RunCode.ROOM_SERVER_ERROR, f"Reading room {room_id} failed: {exc}") from exc
        return observed, True, time.monotonic()

    def _plan(
        self,
        spec: RoomSpec,
        observed: ObservedRoom,
        seeds: dict[str, LocalSeed],
        *,
        endpoints: bool,
        previous: RoomSpec | None,
    ) -> Plan:
        """The plan of `spec` against `observed`, reused from the room's last one when nothing changed."""
        memo = self._plans.get(spec.room_id)
        if memo is not None and memo.fits(spec, observed, seeds, endpoints=endpoints, previous=previous):
            return memo.plan
        plan = plan_room(
            spec,
            observed,
            seeds=seeds,
            resources=self.settings.features.resources,
            operator_endpoints=endpoints,
            protected=protected_names(previous),
        )
        if observed.etag is not None:
            self._plans[spec.room_id] = _PlanMemo(observed.etag, spec, seeds, endpoints, previous, plan)
        else:
            self._plans.pop(spec.room_id, None)
        return plan

    def _record_plan(self, run: _Run, plan: Plan) -> None:
        """Put the plan and its diff lists in the result; a room's last rendering is reused for an equal
        plan (results are read, never changed, once made)."""
        rendered = self._rendered.get(run.spec.room_id)
        if rendered is None or rendered[0] != plan:
            rendered = self._rendered[run.spec.room_id] = (plan, plan_to_json(plan), diff_lists(plan))
        run.result.plan, run.result.diff = rendered[1], rendered[2]

    # ---- PRE_CHECKS ----------------------------------------------------------------------------------

    async def _pre_checks(
        self, run: _Run, plan: Plan, observed: ObservedRoom, *, confirm: bool
    ) -> Plan | None:
        """Scope checks and guardrails; None when the guardrails refuse the plan."""
        result = run.result
        if plan.actionable:
            plan = await self._check_scopes(run, plan)
        verdict = check(plan, observed, settings=self.settings.guardrails, confirm=confirm)
        plan = plan.with_verdict(verdict)
        self._record_plan(run, plan)
        if not verdict.passed:
            result.success = False
            result.code = RunCode.GUARDRAILS_EXCEEDED
            result.errors = [v.message for v in verdict.violations]
            result.warnings.extend(verdict.warnings)
            await self._audit(
                run, "reconcile.guardrail_refused", violations=",".join(v.code for v in verdict.violations)
            )
            return None
        result.warnings.extend(w for w in verdict.warnings if w not in result.warnings)
        result.warnings.extend(w for c in plan.blocked if (w := _blocked_warning(c)) not in result.warnings)
        await self._audit(
            run, "reconcile.pre_checks", actionable=len(plan.actionable), blocked=len(plan.blocked)
        )
        return plan

    async def _check_scopes(self, run: _Run, plan: Plan) -> Plan:
        try:
            identity = await self.client.whoami()
        except Unauthorized as exc:
            raise _unauthorized(exc) from exc
        except NotFound:
            run.result.warnings.append(
                "Room server has no /auth/whoami: token scopes not checked before APPLY"
            )
            return plan
        except RoomServerError as exc:
            raise RunAborted(RunCode.ROOM_SERVER_ERROR, f"Reading the token's scopes failed: {exc}") from exc
        changes = tuple(
            c.block(BlockCode.MISSING_SCOPE, f"token {identity.name!r} lacks scope {c.scope}")
            if c.blocked is None and c.scope not in identity.scopes
            else c
            for c in plan
        )
        return plan.with_changes(changes)

    async def _finish_without_writes(self, run: _Run, plan: Plan) -> None:
        """Nothing to write: the plan itself is the verification (no second read)."""
        result = run.result
        result.phase = Phase.VERIFY
        await self._fail_fatal_blocks(run, plan)
        result.remaining = [_label(c) for c in plan.blocked]
        result.converged = not result.remaining
        self._conclude(run)

    async def _fail_fatal_blocks(self, run: _Run, plan: Plan) -> None:
        """Blocked changes whose spec says `onMissingDependency: fail` fail the run."""
        for change in plan.blocked:
            if change.blocked is not None and change.blocked.fatal:
                await self._fail(run, change, _blocked_warning(change), attempts=0)

    @staticmethod
    def _conclude(run: _Run) -> None:
        """success: nothing failed; partialSuccess: the run finished but the room is not fully converged."""
        result = run.result
        if result.remaining and NOT_CONVERGED not in result.warnings:
            result.warnings.append(NOT_CONVERGED)
        result.success = not result.failed
        result.partial_success = bool(result.failed or result.remaining)
        result.code = RunCode.ITEMS_FAILED if result.failed else None

    # ---- APPLY ---------------------------------------------------------------------------------------

    async def _apply(
        self, run: _Run, plan: Plan, observed: ObservedRoom, *, progress: Progress | None
    ) -> None:
        applier = Applier(self.client, observed, retrier=self.retrier, limiter=self.limiter)
        total, done = len(plan.actionable), 0
        gate = asyncio.Semaphore(self.concurrency)
        await self._fail_fatal_blocks(run, plan)

        async def run_item(item: list[Change]) -> None:
            nonlocal done
            async with gate:
                if item[0].kind is Kind.POLICY:
                    await self._apply_one(run, applier, item)
                    done += len(item)
                    if progress is not None:
                        progress("APPLY", done, total)
                    return
                for position, change in enumerate(item):
                    if run.aborted is not None:
                        return
                    made = await self._apply_one(run, applier, [change])
                    done += 1
                    if progress is not None:
                        progress("APPLY", done, total)
                    if not made:  # what follows (a promote) waits for this change
                        for waiting in item[position + 1 :]:
                            await self._fail(run, waiting, f"its {change.op} failed", attempts=0)
                            done += 1
                        return

        for group in apply_groups(run.spec, plan):
            if run.aborted is not None:
                break
            async with asyncio.TaskGroup() as tasks:
                for item in group:
                    tasks.create_task(run_item(item))

    async def _apply_one(self, run: _Run, applier: Applier, batch: list[Change]) -> bool:
        """Make one change, or every policy change in one call; True when made."""
        first = batch[0]
        try:
            made: Done = await (
                applier.apply_policies(batch) if first.kind is Kind.POLICY else applier.apply(first)
            )
        except RetryFailed as failure:
            error = failure.error
            if isinstance(error, Unauthorized):
                run.aborted = _unauthorized(error)
            for change in batch:
                await self._fail(run, change, str(error), attempts=failure.attempts)
            return False
        run.undos.append(made.undo)
        for change in batch:
            run.result.applied.append(_label(change))
            await self._audit(run, AUDIT_ACTION[change.op], **self._audit_detail(change, made))
        return True

    @staticmethod
    def _audit_detail(change: Change, made: Done) -> dict[str, object]:
        if change.kind is Kind.ENTITY:
            return {"entityId": change.name, "attempts": made.attempts}
        if change.kind is Kind.POLICY:
            return {"policyName": change.name, "value": change.after, "previous": change.before}
        if change.kind is Kind.RESOURCE:
            return {"resourceName": change.name, "attempts": made.attempts}
        return {"artifactName": change.name, **made.detail, "attempts": made.attempts}

    async def _fail(self, run: _Run, change: Change, message: str, *, attempts: int) -> None:
        run.result.failed.append(
            ItemFailure(op=str(change.op), target=change.name, message=message, attempts=attempts)
        )
        run.result.warnings.append(FAILURE_TEXT[change.op].format(name=change.name, error=message))
        await self._audit(
            run, "item.failed", op=change.op, target=change.name, error=message, attempts=attempts
        )

    # ---- ROLLBACK ------------------------------------------------------------------------------------

    async def _rollback(self, run: _Run) -> None:
        result = run.result
        undone = failed = 0
        for undo in reversed(run.undos):
            if undo.run is None:
                result.warnings.append(f"Rollback: {undo.description}")
                continue
            try:
                await undo.run()
            except RetryFailed as failure:
                failed += 1
                result.warnings.append(f"Rollback failed to {undo.description}: {failure.error}")
            else:
                undone += 1
                result.rolled_back.append(undo.description)
        await self._audit(run, "reconcile.rollback", undone=undone, failed=failed)

    # ---- VERIFY --------------------------------------------------------------------------------------

    async def _verify(
        self,
        run: _Run,
        spec: RoomSpec,
        seeds: dict[str, LocalSeed],
        *,
        endpoints: bool,
        previous: RoomSpec | None,
    ) -> None:
        result = run.result
        try:
            observed, _, _ = await self._read(spec.room_id)
        except RunAborted as exc:
            result.warnings.append(f"Verification failed: {exc.message}")
        else:
            remaining = self._plan(spec, observed, seeds, endpoints=endpoints, previous=previous)
            result.remaining = [_label(c) for c in remaining]
            result.converged = remaining.empty
        self._conclude(run)
        await self._audit(
            run, "reconcile.verify", converged=result.converged, remaining=len(result.remaining)
        )

    # ---- audit ---------------------------------------------------------------------------------------

    async def _audit(self, run: _Run, action: str, **metadata: object) -> None:
        if self.audit is None:
            return
        entry = AuditEntry(
            type="event",
            action=action,
            correlation_id=run.correlation_id,
            operator_version=self.settings.version,
            spec_version=run.spec.metadata.version,
            room_id=run.spec.room_id,
            actor=run.actor,
            metadata={
                k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in metadata.items()
            },
        )
        await self.audit.record(entry)
