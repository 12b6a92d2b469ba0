"""Apply order: artifacts after what they depend on, and the groups in which a plan's changes are made.

Pure: the planner orders artifacts with `dependency_order`; the engine runs `apply_groups` one group
after another, the items of a group concurrently, the changes of one item in order.
"""

from __future__ import annotations

from collections.abc import Iterable

from roomoperator.model.changes import Change, Kind, Op, Plan
from roomoperator.spec.models import ArtifactSpec, RoomSpec


def dependency_order(artifacts: Iterable[ArtifactSpec]) -> list[ArtifactSpec]:
    """Artifacts with every `dependsOn` target before its dependents; otherwise spec order (stable)."""
    by_name: dict[str, ArtifactSpec] = {}
    for artifact in artifacts:
        by_name.setdefault(artifact.name, artifact)
    ordered: list[ArtifactSpec] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name in visiting or name not in by_name:
            return
        visiting.add(name)
        for dependency in by_name[name].depends_on:
            visit(dependency)
        visiting.discard(name)
        done.add(name)
        ordered.append(by_name[name])

    for name in by_name:
        visit(name)
    return ordered


def apply_groups(spec: RoomSpec, plan: Plan) -> list[list[list[Change]]]:
    """Entities; artifacts level by level of `dependsOn` (an artifact's seed then its promote as one
    item); artifact deletes; every policy change as one item; resources."""
    actionable = plan.actionable
    entities = [[c] for c in actionable if c.kind is Kind.ENTITY]
    level: dict[str, int] = {}
    for artifact in dependency_order(spec.spec.artifacts):
        level[artifact.name] = 1 + max((level.get(d, -1) for d in artifact.depends_on), default=-1)
    by_level: dict[int, dict[str, list[Change]]] = {}
    deletes: list[list[Change]] = []
    for change in actionable:
        if change.op is Op.DELETE_ARTIFACT:
            deletes.append([change])
        elif change.kind is Kind.ARTIFACT:
            by_level.setdefault(level.get(change.name, 0), {}).setdefault(change.name, []).append(change)
    artifacts = [list(items.values()) for _, items in sorted(by_level.items())]
    policies = [c for c in actionable if c.kind is Kind.POLICY]
    resources = [[c] for c in actionable if c.kind is Kind.RESOURCE]
    groups = [entities, *artifacts, deletes, [policies] if policies else [], resources]
    return [g for g in groups if g]
