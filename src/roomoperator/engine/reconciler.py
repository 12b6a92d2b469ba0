"""The reconcile run: PLANNING -> PRE_CHECKS -> APPLY -> (ROLLBACK) -> VERIFY for one room and one spec.

PLANNING settles the writes an interrupted run left open (`engine/settling.py`, only after a crash),
reads the room once and hashes the seed files (cached), then plans. PRE_CHECKS blocks what the token's
scopes do not allow and judges the plan with the guardrails; a dry run stops there. APPLY re-reads and
re-plans when the first read is older than the stale tolerance, refuses to write when the caller
confirmed another plan (`expect`), then makes the changes (`engine/executing.py`). ROLLBACK (opt-in)
undoes what the run made when items failed. VERIFY reads the room again and lists what still differs;
the run's result keeps the room's revision at that last read (`room_revision`). A prune of an open room
names the entities its spec declared (`release`); PLANNING keeps those the operator joined itself (the
room's event log says, `engine/releasing.py`) for the planner to remove.

A converged room costs one state read and no write (no VERIFY read either: the plan was empty). The
client reads an unchanged room conditionally (`304`, the same `ETag`); the last plan of each room is
kept (`engine/caches.py`) and reused while the room's `ETag`, the spec and the seed files are the same,
so an unchanged room is not planned again. Each phase start is reported to `progress(phase, 0, total)`;
APPLY then reports each change made. Run-level failures never raise: they come back as a `RunResult`
with a `code`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from roomoperator.clients.errors import NotFound, RoomServerError, Unauthorized, Unreachable
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.applying import Applier
from roomoperator.engine.caches import EngineCaches, PlanBasis, PlanMemo, Rendering
from roomoperator.engine.executing import Execution, fail_fatal_blocks, roll_back, unauthorized
from roomoperator.engine.outcome import UNABLE, RunAborted, RunDraft, blocked_warning, label
from roomoperator.engine.ownership import Ownership
from roomoperator.engine.ratelimit import RateLimiter
from roomoperator.engine.releasing import operators_entities
from roomoperator.engine.retrying import Retrier
from roomoperator.engine.seeding import SeedFiles
from roomoperator.engine.settling import settle
from roomoperator.model.audit import AuditSink, Intent, Journal
from roomoperator.model.changes import Plan
from roomoperator.model.codes import BlockCode, RunCode
from roomoperator.model.observed import ObservedRoom
from roomoperator.model.results import Phase, RunResult
from roomoperator.model.seeds import LocalSeed
from roomoperator.planning.difflists import diff_lists
from roomoperator.planning.guardrails import check
from roomoperator.planning.planjson import changes_digest, plan_to_json
from roomoperator.planning.planner import plan_room
from roomoperator.settings import OperatorSettings
from roomoperator.spec.models import RoomSpec

Progress = Callable[[str, int, int], None]

INLINE_SEED_CHECKS = 64
"""Up to this many artifacts, a no-op's seed stats run on the event loop (a thread hop costs more)."""
REFERENCE_SERVER = (
    "GET /room/{room_id}/state answered 404: the room server has no operator endpoints (the reference .NET"
    " server?); entity, policy, promote and delete changes are blocked as unsupported"
)
PLAN_CHANGED = (
    "The room changed since the plan was made: nothing was applied. Review the new plan and apply again."
)


def _saw(run: RunDraft, observed: ObservedRoom, *, endpoints: bool) -> None:
    """The run read the room at `observed.revision` (unknown on a server without operator endpoints)."""
    run.room_revision = observed.revision if endpoints else None


def _tell(progress: Progress | None, phase: Phase, *, total: int = 0) -> None:
    if progress is not None:
        progress(phase, 0, total)


class Reconciler:
    """Brings rooms to their spec through one room-server client."""

    def __init__(
        self,
        client: RoomServerClient,
        settings: OperatorSettings,
        *,
        audit: AuditSink | None = None,
        journal: Journal | None = None,
        rate_limiter: RateLimiter | None = None,
        caches: EngineCaches | None = None,
        retrier: Retrier | None = None,
        concurrency: int | None = None,
        claim_rooms: bool = False,
        operator_url: str | None = None,
    ) -> None:
        """`claim_rooms` records the operator as the manager of each room it writes, with its API's
        `operator_url` (the service does; the one-shot CLI does not: `engine/ownership.py`). `journal`
        records the intent of every write before it is made (`engine/executing.py`); the service passes
        its audit log, which is both."""
        self.client = client
        self.settings = settings
        self.audit = audit
        self.journal = journal
        self.limiter = rate_limiter or RateLimiter(settings.reconciliation.rate_limit_per_second)
        self.caches = caches or EngineCaches()
        self.seed_files = SeedFiles(caches=self.caches)
        self.retrier = retrier or Retrier(settings.retry)
        self.concurrency = concurrency or settings.reconciliation.parallel_uploads
        self.ownership = Ownership(client, claim=claim_rooms, url=operator_url)
        self._open: dict[str, list[Intent]] = {}
        """Per room: intents a crash left open, settled before the room's next run plans."""

    def adopt(self, intents: Iterable[Intent]) -> None:
        """Take the intents a crash left open (the service reads them from its store at start)."""
        for intent in intents:
            self._open.setdefault(intent.entry.room_id, []).append(intent)

    async def room_revision(self, room_id: str) -> int | None:
        """The room's revision now (one conditional state read); None when it cannot be read."""
        try:
            return (await self.client.get_state(room_id)).revision
        except RoomServerError:
            return None

    def state_tag(self, room_id: str) -> str | None:
        """The `ETag` of the room's state at its last read (the last run's last read, between runs)."""
        return self.client.state_tag(room_id)

    async def unchanged(self, room_id: str, etag: str) -> bool:
        """Whether the room is still in the state tagged `etag` (one conditional read: `304`) with no
        write of an earlier run left to settle; False too when it cannot be read (a run then says why)."""
        if self._open.get(room_id):
            return False
        try:
            return await self.client.unchanged(room_id, etag)
        except RoomServerError:
            return False

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
        protected: frozenset[str] = frozenset(),
        expect: str | None = None,
        release: frozenset[str] = frozenset(),
    ) -> RunResult:
        """Every phase for `spec`.

        `protected` names entities and artifacts that must never be removed (the service knows them from
        the room's revisions, `service/protection.py`). `expect` is the digest
        (`planning.planjson.changes_digest`) of the plan the caller confirmed (`RunResult.plan` of a dry
        run): when the plan made at APPLY has other changes, nothing is written and the run ends with
        `RunCode.PLAN_CHANGED` and the new plan. `release` (a prune of a `membership: open` room) names
        the entities the room's spec declared: the ones whose latest join the operator's own token made
        are removed like a closed room's; members' stay.
        """
        requests_before = self.client.requests
        run = RunDraft(
            spec=spec,
            correlation_id=correlation_id or str(uuid.uuid4()),
            actor=actor,
            dry_run=dry_run,
            operator_version=self.settings.version,
            audit_sink=self.audit,
            journal=self.journal,
        )
        try:
            await self._phases(
                run,
                seed_root=seed_root,
                confirm=confirm,
                progress=progress,
                protected=protected,
                expect=expect,
                release=release,
            )
        except RunAborted as abort:
            run.refuse(abort.code, [*run.errors, abort.message])
            await run.audit("reconcile.failed", code=abort.code, error=abort.message, phase=run.phase)
        finally:
            if run.unsettled:  # settled from the room server's log before the room's next run plans
                self._open.setdefault(spec.room_id, []).extend(run.unsettled)
        return run.freeze(requests=self.client.requests - requests_before)

    async def _phases(
        self,
        run: RunDraft,
        *,
        seed_root: Path,
        confirm: bool,
        progress: Progress | None,
        protected: frozenset[str],
        expect: str | None,
        release: frozenset[str],
    ) -> None:
        spec = run.spec
        _tell(progress, Phase.PLANNING)
        if not run.dry_run:
            await self._settle_open(run)
        seeds, (observed, endpoints, read_at) = await self._read_with_seeds(spec, seed_root)
        _saw(run, observed, endpoints=endpoints)
        if not endpoints:
            run.warnings.append(REFERENCE_SERVER.format(room_id=spec.room_id))
        plan, basis = await self._plan_read(
            run, observed, seeds, endpoints=endpoints, protected=protected, release=release
        )
        self._record_plan(run, plan)
        await run.audit("reconcile.planning", changes=len(plan.changes), revision=observed.revision)
        run.phase = Phase.PRE_CHECKS
        _tell(progress, Phase.PRE_CHECKS)
        checked = await self._pre_checks(run, plan, observed, confirm=confirm, expect=expect)
        if checked is None:
            return
        plan = checked
        if run.dry_run:
            run.success, run.partial_success = True, bool(plan.blocked)
            return
        if time.monotonic() - read_at > self.settings.reconciliation.stale_tolerance_seconds:
            observed, endpoints, read_at = await self._read(spec.room_id)
            _saw(run, observed, endpoints=endpoints)
            plan, basis = await self._plan_read(
                run, observed, seeds, endpoints=endpoints, protected=protected, release=release
            )
            run.warnings.append("Room state was stale when APPLY started: re-read and re-planned")
            self._record_plan(run, plan)
            checked = await self._pre_checks(run, plan, observed, confirm=confirm, expect=expect)
            if checked is None:
                return
            plan = checked
        batching = bool(plan.actionable) and endpoints and await self._batching()
        lead = self.ownership.claim_write(run, observed, basis.operator) if batching else None
        if endpoints and not batching:
            await self.ownership.claim_room(run, observed, basis.operator)
        if not plan.actionable:
            await self._finish_without_writes(run, plan)
            return
        run.phase = Phase.APPLY
        _tell(progress, Phase.APPLY, total=len(plan.actionable))
        applier = Applier(self.client, observed, retrier=self.retrier, limiter=self.limiter)
        await Execution(
            run,
            applier,
            concurrency=self.concurrency,
            progress=progress,
            batching=batching,
            lead=lead,
            on_lead=lambda error: self.ownership.claimed(run, observed, basis.operator, error),
        ).apply(plan)
        await run.audit("reconcile.apply", applied=len(run.applied), failed=len(run.failed))
        if run.aborted is not None:
            raise run.aborted
        if run.failed and "on-failure" in (self.settings.reconciliation.rollback, spec.spec.rollback):
            run.phase = Phase.ROLLBACK
            _tell(progress, Phase.ROLLBACK, total=len(run.undos))
            await roll_back(run, applier, batching=batching)
        _tell(progress, Phase.VERIFY)
        await self._verify(run, basis)

    # ---- PLANNING ------------------------------------------------------------------------------------

    async def _settle_open(self, run: RunDraft) -> None:
        """Settle the intents of the room's interrupted writes before planning (`engine/settling.py`)."""
        room_id = run.spec.room_id
        intents = self._open.get(room_id)
        if not intents or self.journal is None:
            return
        observed, _, _ = await self._read(room_id)
        patience = self.settings.room_server.timeout_seconds
        verdicts = await settle(self.client, observed, intents, patience=patience)
        await self.journal.settle([(verdict.intent, verdict.entry) for verdict in verdicts])
        del self._open[room_id]
        made = sum(verdict.entry is not None for verdict in verdicts)
        await run.audit("reconcile.settled", made=made, unmade=len(verdicts) - made)

    async def _plan_read(
        self,
        run: RunDraft,
        observed: ObservedRoom,
        seeds: dict[str, LocalSeed],
        *,
        endpoints: bool,
        protected: frozenset[str],
        release: frozenset[str],
    ) -> tuple[Plan, PlanBasis]:
        """The plan of the room just read, and what it was made from (VERIFY plans on the same basis): the
        operator's name on the room server, the entities released to it."""
        operator = await self.ownership.operator(run, observed) if endpoints else None
        released = await self._released(run, observed, release, endpoints=endpoints)
        basis = PlanBasis(seeds, endpoints, protected, operator, released)
        return self._plan(run.spec, observed, basis), basis

    async def _released(
        self, run: RunDraft, observed: ObservedRoom, declared: frozenset[str], *, endpoints: bool
    ) -> frozenset[str]:
        """Of the entities the room's spec `declared` (a prune of an open room), the ones the operator
        joined itself (a warning says why none is when the room server cannot tell)."""
        if not declared or not endpoints or run.spec.spec.membership != "open":
            return frozenset()
        patience = self.settings.room_server.timeout_seconds
        released = await operators_entities(self.client, observed, declared, patience=patience)
        if released.warning is not None:
            run.warn(released.warning)
        return released.entities

    async def _read_with_seeds(
        self, spec: RoomSpec, seed_root: Path
    ) -> tuple[dict[str, LocalSeed], tuple[ObservedRoom, bool, float]]:
        """The seed files and the room state, the seeds looked at while the state read is in flight.
        Unchanged seed files are known from the caches at the cost of one stat each (on a worker thread
        past `INLINE_SEED_CHECKS` files, so a big room's stats overlap the read); otherwise they are
        resolved and hashed on a worker thread."""
        reading = asyncio.ensure_future(self._read(spec.room_id))
        try:
            if len(spec.spec.artifacts) <= INLINE_SEED_CHECKS:
                known = self.seed_files.known_seeds(spec, seed_root)
            else:
                await asyncio.sleep(0)  # let the read send its request first
                known = await asyncio.to_thread(self.seed_files.known_seeds, spec, seed_root)
            if known is None:
                known = await asyncio.to_thread(self.seed_files.local_seeds, spec, seed_root)
        finally:
            read = await reading
        return known, read

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
            raise unauthorized(exc) from exc
        except Unreachable as exc:
            raise RunAborted(RunCode.ROOM_SERVER_UNREACHABLE, exc.message) from exc
        except RoomServerError as exc:
            raise RunAborted(RunCode.ROOM_SERVER_ERROR, f"Reading room {room_id} failed: {exc}") from exc
        return observed, True, time.monotonic()

    def _plan(self, spec: RoomSpec, observed: ObservedRoom, basis: PlanBasis) -> Plan:
        """The plan of `spec` against `observed`, reused from the room's last one when nothing changed."""
        memo = self.caches.plans.get(spec.room_id, valid=lambda m: m.fits(spec, observed.etag, basis))
        if memo is not None:
            return memo.plan
        plan = plan_room(
            spec,
            observed,
            seeds=basis.seeds,
            resources=self.settings.features.resources,
            operator_endpoints=basis.endpoints,
            protected=basis.protected,
            operator=basis.operator,
            release=basis.release,
        )
        if observed.etag is not None:
            self.caches.plans.put(spec.room_id, PlanMemo(observed.etag, spec, basis, plan))
        return plan

    def _record_plan(self, run: RunDraft, plan: Plan) -> None:
        """Put the plan and its diff lists in the result; a room's last rendering is reused for an equal
        plan (results share it and never change it)."""
        rendering = self.caches.renderings.get(run.spec.room_id, valid=lambda r: r.plan == plan)
        if rendering is None:
            rendering = Rendering(plan, plan_to_json(plan), diff_lists(plan))
            self.caches.renderings.put(run.spec.room_id, rendering)
        run.plan, run.diff = rendering.json, rendering.diff

    # ---- PRE_CHECKS ----------------------------------------------------------------------------------

    async def _pre_checks(
        self,
        run: RunDraft,
        plan: Plan,
        observed: ObservedRoom,
        *,
        confirm: bool,
        expect: str | None,
    ) -> Plan | None:
        """Scope checks, the confirmed plan, guardrails; None when the run must stop here."""
        if plan.actionable:
            plan = await self._check_scopes(run, plan)
        if expect is not None:
            self._record_plan(run, plan)
            if run.plan is not None and changes_digest(run.plan) != expect:
                # The plan the caller confirmed is not this one: say so before judging the new one.
                run.refuse(RunCode.PLAN_CHANGED, [PLAN_CHANGED])
                await run.audit("reconcile.plan_changed", changes=len(plan.changes))
                return None
        verdict = check(plan, observed, settings=self.settings.guardrails, confirm=confirm)
        plan = plan.with_verdict(verdict)
        self._record_plan(run, plan)
        if not verdict.passed:
            run.refuse(RunCode.GUARDRAILS_EXCEEDED, [v.message for v in verdict.violations])
            run.warnings.extend(verdict.warnings)
            codes = ",".join(v.code for v in verdict.violations)
            await run.audit("reconcile.guardrail_refused", violations=codes)
            return None
        run.warn(*verdict.warnings)
        run.warn(*(blocked_warning(c) for c in plan.blocked))
        await run.audit("reconcile.pre_checks", actionable=len(plan.actionable), blocked=len(plan.blocked))
        return plan

    async def _check_scopes(self, run: RunDraft, plan: Plan) -> Plan:
        try:
            identity = await self.client.whoami()
        except Unauthorized as exc:
            raise unauthorized(exc) from exc
        except NotFound:
            run.warnings.append("Room server has no /auth/whoami: token scopes not checked before APPLY")
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

    async def _batching(self) -> bool:
        """Whether the server takes batch requests (`batch.v1`, read once per client from whoami); a
        server that cannot say gets single writes."""
        if not self.settings.room_server.batch:
            return False
        try:
            return await self.client.batching()
        except Unauthorized as exc:
            raise unauthorized(exc) from exc
        except RoomServerError:
            return False

    async def _finish_without_writes(self, run: RunDraft, plan: Plan) -> None:
        """Nothing to write: the plan itself is the verification (no second read)."""
        run.phase = Phase.VERIFY
        await fail_fatal_blocks(run, plan)
        run.remaining = [label(c) for c in plan.blocked]
        run.unable = sum(1 for c in plan.blocked if c.blocked is not None and c.blocked.code in UNABLE)
        run.converged = not run.remaining
        run.conclude()
        await run.audit("reconcile.verify", converged=run.converged, remaining=len(run.remaining))

    # ---- VERIFY --------------------------------------------------------------------------------------

    async def _verify(self, run: RunDraft, basis: PlanBasis) -> None:
        # The plan's writes are made: its rendering would never be equal to a later plan's again (and
        # kept, it would hold a whole plan's JSON a room).
        self.caches.renderings.discard(run.spec.room_id)
        try:
            observed, _, _ = await self._read(run.spec.room_id)
        except RunAborted as exc:
            run.warnings.append(f"Verification failed: {exc.message}")
            run.room_revision = None
        else:
            _saw(run, observed, endpoints=basis.endpoints)
            remaining = self._plan(run.spec, observed, basis)
            run.remaining = [label(c) for c in remaining]
            run.converged = remaining.empty
        run.conclude()
        await run.audit("reconcile.verify", converged=run.converged, remaining=len(run.remaining))
        if run.phase is not Phase.ROLLBACK:
            run.phase = Phase.VERIFY
