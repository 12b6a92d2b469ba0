"""The reference's eight diff lists (`toJoin, toKick, toEnsure, toSeed, toPromote, toApply,
toDeleteArtifacts, blocked`), derived from a plan, so they are true: `toSeed` lists only artifacts
that need a write, `toPromote` only those not yet promoted, `blocked` everything that will not be done.

`toEnsure` lists entities whose declared fields differ (`update`) and resources to load
(`resource:{name}`); the reference listed every entity present on both sides and did nothing with it.
"""

from __future__ import annotations

from roomoperator.model.changes import Op, Plan
from roomoperator.model.results import ReconcileDiff


def diff_lists(plan: Plan) -> ReconcileDiff:
    diff = ReconcileDiff()
    targets = {
        Op.JOIN: diff.to_join,
        Op.KICK: diff.to_kick,
        Op.UPDATE: diff.to_ensure,
        Op.SEED: diff.to_seed,
        Op.RESEED: diff.to_seed,
        Op.PROMOTE: diff.to_promote,
        Op.DELETE_ARTIFACT: diff.to_delete_artifacts,
    }
    for change in plan:
        if change.blocked is not None:
            if change.name not in diff.blocked:
                diff.blocked.append(change.name)
        elif change.op is Op.SET_POLICY:
            diff.to_apply.append(f"policy:{change.name}={_policy_value(change.after)}")
        elif change.op is Op.ENSURE_RESOURCE:
            diff.to_ensure.append(f"resource:{change.name}")
        else:
            targets[change.op].append(change.name)
    return diff


def _policy_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
