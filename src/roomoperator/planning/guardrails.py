"""Guardrails: the pure safety judgement of a plan before anything is written (reference `Guardrails`).

The reference's three checks, with its message texts (`docs/compatibility.md`), counted on the real
plan (blocked removals do not count): kicks per cycle, artifact deletes per cycle, and a removal ratio
above `change_threshold` that needs confirmation (`X-Confirm: true`, `--confirm`) when
`require_confirm_header` is on. Added: emptying a non-empty room needs confirmation unless
`allow_empty_room`. Confirmation never lifts the count limits. Percentages are rounded half-to-even and
printed en-US style (`60%`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from roomoperator.model.changes import Op, Plan, Verdict, Violation
from roomoperator.model.codes import GuardrailCode
from roomoperator.model.observed import ObservedRoom
from roomoperator.settings import GuardrailSettings


def percent(ratio: float) -> str:
    """`{ratio:P0}` as .NET writes it in en-US: x100, no decimals, half-to-even."""
    value = (Decimal(ratio) * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return f"{value}%"


def check(plan: Plan, observed: ObservedRoom, *, settings: GuardrailSettings, confirm: bool) -> Verdict:
    """The verdict on `plan` against the room it was made from."""
    kicks = sum(1 for c in plan.actionable if c.op is Op.KICK)
    deletes = sum(1 for c in plan.actionable if c.op is Op.DELETE_ARTIFACT)
    present = len(observed.entities) + len(observed.artifacts)
    violations: list[Violation] = []
    warnings: list[str] = []
    max_kicks, max_deletes = settings.max_entities_kick_per_cycle, settings.max_artifacts_delete_per_cycle
    if kicks > max_kicks:
        violations.append(
            Violation(GuardrailCode.KICK_LIMIT, f"Kick count ({kicks}) exceeds limit ({max_kicks})")
        )
    if deletes > max_deletes:
        violations.append(
            Violation(
                GuardrailCode.DELETE_LIMIT, f"Artifact delete count ({deletes}) exceeds limit ({max_deletes})"
            )
        )
    ratio = (kicks + deletes) / present if present else 0.0
    if ratio > settings.change_threshold:
        shown, threshold = percent(ratio), percent(settings.change_threshold)
        if settings.require_confirm_header and not confirm:
            message = (
                f"Change ratio ({shown}) exceeds threshold ({threshold}). X-Confirm:true header required."
            )
            violations.append(Violation(GuardrailCode.CHANGE_RATIO, message))
        elif confirm:
            warnings.append(f"High change ratio ({shown}) detected but confirmed")
        else:
            warnings.append(
                f"High change ratio ({shown}) detected; confirmation not required by configuration"
            )
    additions = sum(1 for c in plan.actionable if c.op in (Op.JOIN, Op.SEED))
    if present and kicks + deletes == present and not additions and not settings.allow_empty_room:
        message = f"Removing every entity and artifact ({present}) would empty room {plan.room_id}."
        if confirm:
            warnings.append(f"{message} Confirmed.")
        else:
            violations.append(
                Violation(GuardrailCode.EMPTY_ROOM, f"{message} X-Confirm:true header required.")
            )
    return Verdict(violations=tuple(violations), warnings=tuple(warnings))
