"""The APPLY and ROLLBACK phases of a run: the plan's changes made group by group, then undone if asked.

Groups come from `planning.ordering.apply_groups` and run one after another; the items of a group run
concurrently (at most `concurrency` at once); the changes of one item (an artifact's seed, then its
promote) run in order, and a failed change fails what waits for it. One failure never stops the other
items; a refused token (401) stops the run after the items in flight. Each change made is audited with
the action below; ROLLBACK undoes what the run made, newest first.

With a journal, the intents of a group's changes are recorded (one transaction) before the group's first
call, and each change's audit entry settles its intent; intents of changes never attempted (an aborted
run) are dropped at the group's end. A crash in between leaves them open for the next start
(`engine/settling.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from roomoperator.clients.errors import Unauthorized
from roomoperator.engine.applying import Applier, Done
from roomoperator.engine.outcome import RunAborted, RunDraft, blocked_warning, label
from roomoperator.engine.retrying import RetryFailed
from roomoperator.model.audit import Intent
from roomoperator.model.changes import Change, Kind, Op, Plan, SeedContent
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase
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
    """Makes one plan's changes for one run."""

    def __init__(self, run: RunDraft, applier: Applier, *, concurrency: int, progress: Progress | None):
        self.run = run
        self.applier = applier
        self.progress = progress
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
            async with asyncio.TaskGroup() as tasks:
                for item in group:
                    tasks.create_task(self._item(item))
            for intent in self._intents.values():  # never attempted: the run was aborted
                await self.run.abandon(intent)
            self._intents.clear()

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
                    for waiting in item[position + 1 :]:
                        message = f"its {change.op} failed"
                        await self.run.fail(waiting, message, attempts=0, settles=self._settling(waiting))
                        self._count(1)
                    return

    async def _make(self, batch: list[Change]) -> bool:
        """Make one change, or every policy change in one call; True when made."""
        first = batch[0]
        try:
            made = await (
                self.applier.apply_policies(batch) if first.kind is Kind.POLICY else self.applier.apply(first)
            )
        except RetryFailed as failure:
            if isinstance(failure.error, Unauthorized):
                self.run.aborted = unauthorized(failure.error)
            for change in batch:
                await self.run.fail(
                    change, str(failure.error), attempts=failure.attempts, settles=self._settling(change)
                )
            return False
        self.run.undos.append(made.undo)
        for change in batch:
            self.run.applied.append(label(change))
            await self.run.audit(
                AUDIT_ACTION[change.op],
                settles=self._settling(change),
                **audit_detail(change),
                **_attempts(change, made),
            )
        return True


async def roll_back(run: RunDraft) -> None:
    """Undo what the run made, newest first; what cannot be undone is said in a warning."""
    undone = failed = 0
    for undo in reversed(run.undos):
        if undo.run is None:
            run.warnings.append(f"Rollback: {undo.description}")
            continue
        try:
            await undo.run()
        except RetryFailed as failure:
            failed += 1
            run.warnings.append(f"Rollback failed to {undo.description}: {failure.error}")
        else:
            undone += 1
            run.rolled_back.append(undo.description)
    await run.audit("reconcile.rollback", undone=undone, failed=failed)
