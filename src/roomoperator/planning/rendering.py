"""Plans for people and for programs: a rich table (`roomop plan`) and the versioned JSON plan format
(`roomop plan --output json`, `RunResult.plan`; documented in `docs/plan-format.md`).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from rich.table import Table
from rich.text import Text

from roomoperator.planning.changes import Change, Op, Plan
from roomoperator.planning.difflists import diff_lists

FORMAT_VERSION = "1.0"

STYLE_OF: dict[Op, str] = {
    Op.JOIN: "green",
    Op.SEED: "green",
    Op.ENSURE_RESOURCE: "green",
    Op.UPDATE: "yellow",
    Op.RESEED: "yellow",
    Op.PROMOTE: "yellow",
    Op.SET_POLICY: "yellow",
    Op.KICK: "red",
    Op.DELETE_ARTIFACT: "red",
}


def change_to_json(change: Change) -> dict[str, Any]:
    blocked = change.blocked
    return {
        "op": str(change.op),
        "kind": str(change.kind),
        "name": change.name,
        "reason": change.reason,
        "scope": change.scope,
        "before": change.before,
        "after": change.after,
        "blocked": None
        if blocked is None
        else {"code": str(blocked.code), "message": blocked.message, "fatal": blocked.fatal},
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan in format `FORMAT_VERSION`: summary, changes in apply order, guardrails, reference diff."""
    counts = Counter(str(c.op) for c in plan.actionable)
    return {
        "formatVersion": FORMAT_VERSION,
        "roomId": plan.room_id,
        "spec": {"name": plan.spec_name, "version": plan.spec_version},
        "observedRevision": plan.observed_revision,
        "summary": {
            **{str(op): counts.get(str(op), 0) for op in Op},
            "blocked": len(plan.blocked),
            "total": len(plan.changes),
        },
        "changes": [change_to_json(c) for c in plan],
        "guardrails": {
            "passed": plan.verdict.passed,
            "violations": [{"code": v.code, "message": v.message} for v in plan.verdict.violations],
            "warnings": list(plan.verdict.warnings),
        },
        "diff": diff_lists(plan).model_dump(by_alias=True),
    }


def _detail(change: dict[str, Any]) -> str:
    blocked, before, after = change["blocked"], change["before"], change["after"]
    if blocked is not None:
        return f"BLOCKED {blocked['code']}: {blocked['message']}"
    if change["op"] == Op.SET_POLICY:
        return f"{json.dumps(before)} -> {json.dumps(after)}"
    if change["op"] in (Op.UPDATE, Op.RESEED) and isinstance(before, dict) and isinstance(after, dict):
        fields = [k for k in before if k in after]
        shown = ", ".join(f"{k}: {json.dumps(before[k])} -> {json.dumps(after[k])}" for k in fields)
        return shown or str(change["reason"])
    return str(change["reason"])


def plan_table(plan: dict[str, Any]) -> Table:
    """One row per change of a JSON plan (op, kind, name, detail), coloured by what the change does."""
    spec = plan["spec"]
    table = Table(title=f"Plan for room {plan['roomId']} (spec {spec['name']} v{spec['version']})")
    for column in ("op", "kind", "name", "detail"):
        table.add_column(column, overflow="fold")
    for change in plan["changes"]:
        style = "dim" if change["blocked"] is not None else STYLE_OF[Op(change["op"])]
        table.add_row(Text(change["op"], style=style), change["kind"], change["name"], _detail(change))
    return table


def plan_summary(plan: dict[str, Any]) -> str:
    """`3 to apply (1 join, 2 seed), 1 blocked` or `No changes. The room matches its spec.`"""
    summary = plan["summary"]
    if not summary["total"]:
        return "No changes. The room matches its spec."
    counts = [f"{summary[str(op)]} {op}" for op in Op if summary[str(op)]]
    to_apply = summary["total"] - summary["blocked"]
    text = f"{to_apply} to apply" + (f" ({', '.join(counts)})" if counts else "")
    return text + (f", {summary['blocked']} blocked" if summary["blocked"] else "")
