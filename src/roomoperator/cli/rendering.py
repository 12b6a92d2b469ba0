"""Rich rendering for the terminal: plan tables and summaries drawn from the JSON plan format.

Every `roomop` command that shows a plan or a result to a person goes through here; `--output json`
prints the JSON itself instead.
"""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text

from roomoperator.model.changes import Op

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
