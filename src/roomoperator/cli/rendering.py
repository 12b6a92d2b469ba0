"""Rich rendering for the terminal: plans, run results, problems and validation reports for people.

Every `roomop` command that shows a plan, a result or a spec problem to a person goes through here (the
command modules only orchestrate); plans are drawn from the JSON plan format. `--output json` prints
the JSON itself instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from roomoperator.model.changes import Op
from roomoperator.model.codes import RunCode
from roomoperator.model.results import RunResult
from roomoperator.spec.errors import SpecIssue
from roomoperator.spec.loading import LoadedSpec

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
    """One row per change of a JSON plan (op, kind, name, detail), coloured by what the change does, then
    one dim `skip` row per declared item the operator does not act on, with the reason."""
    spec = plan["spec"]
    table = Table(title=f"Plan for room {plan['roomId']} (spec {spec['name']} v{spec['version']})")
    for column in ("op", "kind", "name", "detail"):
        table.add_column(column, overflow="fold")
    for change in plan["changes"]:
        style = "dim" if change["blocked"] is not None else STYLE_OF[Op(change["op"])]
        table.add_row(Text(change["op"], style=style), change["kind"], change["name"], _detail(change))
    for item in plan.get("skipped", []):
        detail = f"SKIPPED {item['code']}: {item['reason']}"
        table.add_row(Text("skip", style="dim"), item["kind"], item["name"], detail, style="dim")
    return table


def skipped_summary(plan: dict[str, Any]) -> str:
    """`3 resources skipped: features.resources is off: ...`, or "" when nothing is skipped."""
    skipped = plan.get("skipped", [])
    if not skipped:
        return ""
    kinds = sorted({item["kind"] for item in skipped})
    what = (
        _count(len(skipped), kinds[0], f"{kinds[0]}s")
        if len(kinds) == 1
        else _count(len(skipped), "item", "items")
    )
    reasons = "; ".join(dict.fromkeys(item["reason"] for item in skipped))
    return f"{what} skipped: {reasons}"


def plan_summary(plan: dict[str, Any]) -> str:
    """`3 to apply (1 join, 2 seed), 1 blocked` or `No changes. The room matches its spec.`, then what
    is skipped and why."""
    summary = plan["summary"]
    skipped = skipped_summary(plan)
    if not summary["total"]:
        return "No changes. The room matches its spec." + (
            f" {skipped[0].upper()}{skipped[1:]}." if skipped else ""
        )
    counts = [f"{summary[str(op)]} {op}" for op in Op if summary[str(op)]]
    to_apply = summary["total"] - summary["blocked"]
    text = f"{to_apply} to apply" + (f" ({', '.join(counts)})" if counts else "")
    text += f", {summary['blocked']} blocked" if summary["blocked"] else ""
    return text + (f"; {skipped}" if skipped else "")


def print_plan(console: Console, result: RunResult) -> None:
    """The plan of a run (its table when it has changes or skipped items, then its summary line), if
    the run got one."""
    if result.plan is None:
        return
    if result.plan["changes"] or result.plan.get("skipped"):
        console.print(plan_table(result.plan))
    console.print(plan_summary(result.plan))


def print_problems(console: Console, result: RunResult) -> None:
    """A run's errors, then its warnings, one a line."""
    for error in result.errors:
        console.print(f"[red]error:[/red] {escape(error)}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def print_planned(console: Console, results: Sequence[RunResult]) -> None:
    """Every room's plan with its problems, as `roomop plan` shows them and `roomop apply` asks about."""
    for result in results:
        print_plan(console, result)
        print_problems(console, result)
        if result.code is RunCode.GUARDRAILS_EXCEEDED:
            console.print(
                f"The guardrails refuse this plan: nothing would be applied to room {escape(result.room_id)}."
                " Pass --confirm when the removals are intended (the kick and delete limits are settings)."
            )


def result_table(result: RunResult) -> Table:
    """One row per change an APPLY made, failed, rolled back or left differing."""
    table = Table(title=f"Result for room {result.room_id}")
    table.add_column("outcome")
    table.add_column("change", overflow="fold")
    table.add_column("detail", overflow="fold")
    for label in result.applied:
        table.add_row("[green]applied[/green]", label, "")
    for failure in result.failed:
        table.add_row(
            "[red]failed[/red]",
            f"{failure.op}:{failure.target}",
            f"{failure.message} ({failure.attempts} calls)",
        )
    for label in result.rolled_back:
        table.add_row("[yellow]rolled back[/yellow]", label, "")
    for label in result.remaining:
        table.add_row("[dim]remaining[/dim]", label, "")
    return table


def print_applied(console: Console, result: RunResult) -> None:
    """What an APPLY did to one room: the result table, the problems and a one-line verdict."""
    console.print(result_table(result))
    print_problems(console, result)
    state = "converged" if result.converged else "not converged"
    console.print(f"{len(result.applied)} applied, {len(result.failed)} failed: the room is {state}.")


def print_plan_changed(console: Console, result: RunResult) -> None:
    """A room that changed between the plan the user confirmed and APPLY: nothing was written to it."""
    console.print(
        f"[red]error:[/red] room {escape(result.room_id)} changed since its plan was shown: nothing was"
        " applied to it. Its plan now is:"
    )
    print_plan(console, result)
    console.print("Run `roomop apply` again to review and apply the new plan.")


def room_summary(room: LoadedSpec) -> str:
    """`room room-ai-lab-01 (ai-lab v4): 3 entities, 2 artifacts, 1 resource`."""
    body = room.spec.spec
    counts = [
        _count(len(body.entities), "entity", "entities"),
        _count(len(body.artifacts), "artifact", "artifacts"),
        _count(len(body.resources), "resource", "resources"),
    ]
    metadata = room.spec.metadata
    return f"room {room.spec.room_id} ({metadata.name} v{metadata.version}): {', '.join(counts)}"


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def print_validation(console: Console, rooms: Sequence[LoadedSpec], errors: Sequence[SpecIssue]) -> None:
    """`roomop validate`: one line per valid room with its warnings, then every error."""
    for room in rooms:
        console.print(f"{escape(room.source)}: [green]ok[/green]: {escape(room_summary(room))}")
        for warning in room.warnings:
            console.print(f"[yellow]warning[/yellow]: {escape(str(warning))}")
    print_spec_issues(console, errors)


def print_spec_issues(console: Console, issues: Sequence[SpecIssue]) -> None:
    """Every spec problem as FILE:LINE:COL: field.path: message, then how many there are in how many files."""
    for issue in issues:
        console.print(escape(str(issue)), style="red")
    if issues:
        sources = len({issue.source for issue in issues})
        console.print(
            f"{_count(len(issues), 'error', 'errors')} in {_count(sources, 'file', 'files')}", style="bold"
        )
