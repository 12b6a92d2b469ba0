"""The reference's eight diff lists (`toJoin, toKick, toEnsure, toSeed, toPromote, toApply,
toDeleteArtifacts, blocked`) and our two (`toUpdate`, `toLoad`), derived from a plan, so they are true:
`toSeed` lists only artifacts that need a write, `toPromote` only those not yet promoted, `blocked`
everything that will not be done.

`toEnsure` keeps the reference's meaning: every declared entity present on both sides, in spec order
(informational: the reference did nothing with it). Entities whose declared fields differ are `toUpdate`;
MCP providers to load for the spec's resources are `toLoad`.
"""

from __future__ import annotations

from roomoperator.model.changes import Op, Plan
from roomoperator.model.results import ReconcileDiff


def diff_lists(plan: Plan) -> ReconcileDiff:
    diff = ReconcileDiff(to_ensure=list(plan.present))
    targets = {
        Op.JOIN: diff.to_join,
        Op.KICK: diff.to_kick,
        Op.UPDATE: diff.to_update,
        Op.SEED: diff.to_seed,
        Op.RESEED: diff.to_seed,
        Op.PROMOTE: diff.to_promote,
        Op.DELETE_ARTIFACT: diff.to_delete_artifacts,
        Op.ENSURE_RESOURCE: diff.to_load,
    }
    for change in plan:
        if change.blocked is not None:
            if change.name not in diff.blocked:
                diff.blocked.append(change.name)
        elif change.op is Op.SET_POLICY:
            diff.to_apply.append(f"policy:{change.name}={_policy_value(change.after)}")
        else:
            targets[change.op].append(change.name)
    return diff


def _policy_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
