"""The APPLY and ROLLBACK phases of a run: the plan's changes made group by group, then undone if asked.

Groups come from `planning.ordering.apply_groups` and run one after another; the items of a group run
concurrently (at most `concurrency` at once); the changes of one item (an artifact's seed, then its
promote) run in order, and a failed change fails what waits for it. Against a server with `batch.v1`,
a group's uploads and resource loads run first (at most `concurrency` at once), then every write of the
group (entity upserts and removals, promotes, deletes, policies) goes in one batch request in the group's
order, each item's result mapped as its single call's answer is; the manager claim leads the first batch.
One failure never stops the other items; a refused token (401) or a fenced write (409 `FENCED`: another
replica owns the room now) stops the run after the items in flight.
Each change made is audited with the action below; ROLLBACK undoes what the run made, newest first.

With a journal, the intents of a group's changes are recorded (one transaction) before the group's first
call, and each change's audit entry settles its intent; intents of changes never attempted (an aborted
run) are dropped at the group's end. A crash in between leaves them open for the next start
(`engine/settling.py`). So does a write that failed without a definite answer (no answer, a 5xx or a
429: it may have been made before its answer was lost): its `item.failed` entry settles nothing, and the
room's next run settles the intent from the room server's event log (`RunDraft.unsettled`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from roomoperator.clients.errors import Fenced, Unauthorized
from roomoperator.engine.applying import Applier, Done, Step, Undo
from roomoperator.engine.outcome import RunAborted, RunDraft, blocked_warning, label
from roomoperator.engine.retrying import RetryFailed
from roomoperator.model.audit import AuditEntry, Intent
from roomoperator.model.changes import Change, Kind, Op, Plan, SeedContent
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase
from roomoperator.model.writes import Write
from roomoperator.planning.ordering import apply_groups

Progress = Callable[[str, int, int], None]

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


def unauthorized(error: Exception) -> RunAborted:
    message = getattr(error, "message", str(error))
    return RunAborted(
        RunCode.UNAUTHORIZED,
        f"The room server refused the token it was given ({message}): set ROOM_AUTH_TOKEN (or --token) to a"
        " token it knows; `roomop up` writes its tokens to .roomop/credentials.json",
    )


async def fail_fatal_blocks(run: RunDraft, plan: Plan) -> None:
    """Blocked changes whose spec says `onMissingDependency: fail` fail the run."""
    for change in plan.blocked:
        if change.blocked is not None and change.blocked.fatal:
            await run.fail(change, blocked_warning(change), attempts=0)


def audit_detail(change: Change) -> dict[str, object]:
    """What the audit entry of `change` says, known before it is made (its attempts are added after)."""
    if change.kind is Kind.ENTITY:
        return {"entityId": change.name}
    if change.kind is Kind.POLICY:
        return {"policyName": change.name, "value": change.after, "previous": change.before}
    if change.kind is Kind.RESOURCE:
        return {"resourceName": change.name}
    if isinstance(change.after, SeedContent):
        return {"artifactName": change.name, "hash": change.after.fingerprint, "sha256": change.after.sha256}
    return {"artifactName": change.name}


def _attempts(change: Change, made: Done) -> dict[str, object]:
    return {} if change.kind is Kind.POLICY else {"attempts": made.attempts}


class Execution:
    """Makes one plan's changes for one run; with `batching`, each group's writes in one batch request
    (the server has `batch.v1`), preceded by `lead` (the manager claim, whose result goes to `on_lead`)."""

    def __init__(
        self,
        run: RunDraft,
        applier: Applier,
        *,
        concurrency: int,
        progress: Progress | None,
        batching: bool = False,
        lead: Write | None = None,
        on_lead: Callable[[BaseException | None], None] | None = None,
    ):
        self.run = run
        self.applier = applier
        self.progress = progress
        self.batching = batching
        self._lead = lead
        self._on_lead = on_lead
        self._gate = asyncio.Semaphore(concurrency)
        self._done = 0
        self._total = 0
        self._intents: dict[str, Intent] = {}
        """The open intents of the current group, by change label."""

    async def apply(self, plan: Plan) -> None:
        self._total = len(plan.actionable)
        await fail_fatal_blocks(self.run, plan)
        for group in apply_groups(self.run.spec, plan):
            if self.run.aborted is not None:
                break
            await self._intend(group)
            if self.batching:
                await self._batched(group)
            else:
                async with asyncio.TaskGroup() as tasks:
                    for item in group:
                        tasks.create_task(self._item(item))
            for intent in self._intents.values():  # never attempted: the run was aborted
                await self.run.abandon(intent)
            self._intents.clear()
        if self._lead is not None and self.run.aborted is None:  # no group had a write to lead
            await self._send([])

    async def _intend(self, group: list[list[Change]]) -> None:
        for change in (change for item in group for change in item):
            intent = self.run.intent(change, AUDIT_ACTION[change.op], **audit_detail(change))
            if intent is not None:
                self._intents[label(change)] = intent
        await self.run.intend(list(self._intents.values()))

    def _settling(self, change: Change) -> Intent | None:
        """The open intent of `change`, which its audit entry now settles."""
        return self._intents.pop(label(change), None)

    def _count(self, made: int) -> None:
        self._done += made
        if self.progress is not None:
            self.progress(Phase.APPLY, self._done, self._total)

    def _step(self, item: list[Change]) -> Step | None:
        """The write that makes the item's first change (every change, for the policies item)."""
        if item[0].kind is Kind.POLICY:
            return self.applier.policies_step(item)
        return self.applier.step(item[0])

    async def _item(self, item: list[Change]) -> None:
        async with self._gate:
            if item[0].kind is Kind.POLICY:  # every policy change in one call
                await self._make(item)
                self._count(len(item))
                return
            for position, change in enumerate(item):
                if self.run.aborted is not None:
                    return
                made = await self._make([change])
                self._count(1)
                if not made:  # what follows (a promote) waits for this change
                    await self._fail_waiting(change, item[position + 1 :])
                    return

    async def _fail_waiting(self, failed: Change, waiting: list[Change]) -> None:
        for change in waiting:
            await self.run.fail(change, f"its {failed.op} failed", attempts=0, settles=self._settling(change))
            self._count(1)

    async def _batched(self, group: list[list[Change]]) -> None:
        """The group's calls of their own (uploads, resource loads) at once, bounded; then every write of
        the group in one batch request, in the group's order (a promote after its seed was made)."""
        alone = [index for index, item in enumerate(group) if self._step(item) is None]
        stopped: set[int] = set()

        async def first_of(index: int) -> None:
            item = group[index]
            async with self._gate:
                if self.run.aborted is not None:
                    return
                made = await self._make([item[0]])
                self._count(1)
                if not made:
                    stopped.add(index)
                    await self._fail_waiting(item[0], item[1:])

        async with asyncio.TaskGroup() as tasks:
            for index in alone:
                tasks.create_task(first_of(index))
        steps: list[tuple[list[Change], Step]] = []
        for index, item in enumerate(group):
            if item[0].kind is Kind.POLICY:
                steps.append((item, self.applier.policies_step(item)))
            elif index not in stopped:
                for change in item[1:] if index in alone else item:
                    step = self.applier.step(change)
                    if step is not None:
                        steps.append(([change], step))
        if steps and self.run.aborted is None:
            await self._send(steps)

    async def _send(self, steps: list[tuple[list[Change], Step]]) -> None:
        """One batch request for `steps` (the lead write first, once); each result mapped to its changes."""
        lead, self._lead = self._lead, None
        writes = [step.write for _, step in steps]
        try:
            results, attempts = await self.applier.apply_batch([lead, *writes] if lead else writes)
        except RetryFailed as failure:
            if lead is not None and self._on_lead is not None:
                self._on_lead(failure.error)
            await self.run.record(
                [entry for changes, _ in steps for entry in self._failed_entries(changes, failure)]
            )
            self._count(sum(len(changes) for changes, _ in steps))
            return
        if lead is not None:
            if self._on_lead is not None:
                self._on_lead(results[0].error)
            results = results[1:]
        # Every entry of the batch recorded at once: one journal transaction, in the batch's order.
        entries: list[tuple[AuditEntry, Intent | None]] = []
        for (changes, step), result in zip(steps, results, strict=True):
            if result.error is not None:
                entries += self._failed_entries(changes, RetryFailed(result.error, attempts))
            else:
                entries += self._made_entries(changes, Done(attempts, step.undo(result)))
        await self.run.record(entries)
        self._count(sum(len(changes) for changes, _ in steps))

    async def _make(self, batch: list[Change]) -> bool:
        """Make one change, or every policy change in one call; True when made."""
        first = batch[0]
        try:
            if first.kind is Kind.POLICY:
                made = await self.applier.apply_step(self.applier.policies_step(batch))
            else:
                made = await self.applier.apply(first)
        except RetryFailed as failure:
            await self.run.record(self._failed_entries(batch, failure))
            return False
        await self.run.record(self._made_entries(batch, made))
        return True

    def _failed_entries(
        self, batch: list[Change], failure: RetryFailed
    ) -> list[tuple[AuditEntry, Intent | None]]:
        """`batch` failed: each change's entry, with the intent it settles. When the failure leaves it
        unknown whether the write was made, the intent stays open for the next run (settles nothing)."""
        if isinstance(failure.error, Unauthorized):
            self.run.aborted = unauthorized(failure.error)
        elif isinstance(failure.error, Fenced):
            self.run.aborted = RunAborted(
                RunCode.FENCED,
                f"The room server refused this replica's write ({failure.error.message}): another operator"
                " replica owns the room now and runs it; this run stops",
            )
        maybe_made = getattr(failure.error, "transient", False)
        settles = [self._settling(change) for change in batch]
        if maybe_made:
            self.run.unsettled.extend(intent for intent in settles if intent is not None)
        return [
            (
                self.run.failure(change, str(failure.error), attempts=failure.attempts),
                None if maybe_made else intent,
            )
            for change, intent in zip(batch, settles, strict=True)
        ]

    def _made_entries(self, batch: list[Change], made: Done) -> list[tuple[AuditEntry, Intent | None]]:
        """`batch` was made: each change's audit entry, with the intent it settles."""
        self.run.undos.append(made.undo)
        self.run.applied.extend(label(change) for change in batch)
        return [
            (
                self.run.entry(
                    AUDIT_ACTION[change.op],
                    **{**audit_detail(change), **made.detail},
                    **_attempts(change, made),
                ),
                self._settling(change),
            )
            for change in batch
        ]


async def roll_back(run: RunDraft, applier: Applier, *, batching: bool = False) -> None:
    """Undo what the run made, newest first; what cannot be undone is said in a warning. With
    `batching`, consecutive undos that are one write each go in one batch request, in that order."""
    tally = {"undone": 0, "failed": 0}

    def settled(undo: Undo, error: BaseException | None) -> None:
        if error is None:
            tally["undone"] += 1
            run.rolled_back.append(undo.description)
        else:
            tally["failed"] += 1
            run.warnings.append(f"Rollback failed to {undo.description}: {error}")

    pending: list[Undo] = []

    async def flush() -> None:
        writes = [undo.write for undo in pending if undo.write is not None]
        try:
            results, _ = await applier.apply_batch(writes)
        except RetryFailed as failure:
            for undo in pending:
                settled(undo, failure.error)
        else:
            for undo, result in zip(pending, results, strict=True):
                settled(undo, result.error)
        pending.clear()

    for undo in reversed(run.undos):
        if batching and undo.write is not None:
            pending.append(undo)
            continue
        if pending:
            await flush()
        if undo.run is None:
            run.warnings.append(f"Rollback: {undo.description}")
            continue
        try:
            await undo.run()
        except RetryFailed as failure:
            settled(undo, failure.error)
        else:
            settled(undo, None)
    if pending:
        await flush()
    await run.audit("reconcile.rollback", undone=tally["undone"], failed=tally["failed"])
