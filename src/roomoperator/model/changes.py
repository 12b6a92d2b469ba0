"""The vocabulary of a plan: typed changes, why an item is blocked, the guardrail verdict, the plan itself.

A `Change` is one thing the engine would do to the room (`op` on `kind` `name`), with the reason and the
before/after values that justify it. A change that cannot be made carries `blocked`; it is shown in the
plan and the result, and never reported as done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from roomoperator.model.codes import BlockCode, GuardrailCode


class Op(StrEnum):
    JOIN = "join"
    UPDATE = "update"
    KICK = "kick"
    SEED = "seed"
    RESEED = "reseed"
    PROMOTE = "promote"
    DELETE_ARTIFACT = "delete-artifact"
    SET_POLICY = "set-policy"
    ENSURE_RESOURCE = "ensure-resource"


class Kind(StrEnum):
    ENTITY = "entity"
    ARTIFACT = "artifact"
    POLICY = "policy"
    RESOURCE = "resource"


KIND_OF: dict[Op, Kind] = {
    Op.JOIN: Kind.ENTITY,
    Op.UPDATE: Kind.ENTITY,
    Op.KICK: Kind.ENTITY,
    Op.SEED: Kind.ARTIFACT,
    Op.RESEED: Kind.ARTIFACT,
    Op.PROMOTE: Kind.ARTIFACT,
    Op.DELETE_ARTIFACT: Kind.ARTIFACT,
    Op.SET_POLICY: Kind.POLICY,
    Op.ENSURE_RESOURCE: Kind.RESOURCE,
}

# The room-server scope each change needs (docs/contract.md, "Scopes per operator change").
SCOPE_OF: dict[Kind, str] = {
    Kind.ENTITY: "room:entities:write",
    Kind.ARTIFACT: "room:artifacts:write",
    Kind.POLICY: "room:policies:write",
    Kind.RESOURCE: "room:admin",
}

REMOVALS = frozenset({Op.KICK, Op.DELETE_ARTIFACT})


@dataclass(frozen=True)
class Blocked:
    """Why a change will not be made. `fatal` ones (`onMissingDependency: fail`) fail the run."""

    code: BlockCode
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class Change:
    """One change to the room. `source` is the resolved seed file of seed/reseed changes."""

    op: Op
    name: str
    reason: str
    before: Any = None
    after: Any = None
    blocked: Blocked | None = None
    source: Path | None = field(default=None, compare=False)

    @property
    def kind(self) -> Kind:
        return KIND_OF[self.op]

    @property
    def scope(self) -> str:
        return SCOPE_OF[self.kind]

    @property
    def address(self) -> str:
        """`kind:name`, unique within a plan except for an artifact's seed + promote pair."""
        return f"{self.kind}:{self.name}"

    def block(self, code: BlockCode, message: str, *, fatal: bool = False) -> Change:
        return replace(self, blocked=Blocked(code, message, fatal))


@dataclass(frozen=True)
class Violation:
    """One guardrail refusal: a machine-readable code and the reference's message text."""

    code: GuardrailCode
    message: str


@dataclass(frozen=True)
class Verdict:
    """The guardrails' judgement of a plan."""

    violations: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class Plan:
    """Every change that would bring the room to its spec, in apply order, and the guardrail verdict."""

    room_id: str
    spec_name: str
    spec_version: int
    observed_revision: int
    changes: tuple[Change, ...] = ()
    verdict: Verdict = Verdict()

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    @property
    def actionable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.blocked is None)

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.blocked is not None)

    @property
    def empty(self) -> bool:
        """True when the room already matches its spec."""
        return not self.changes

    def with_changes(self, changes: tuple[Change, ...]) -> Plan:
        return replace(self, changes=changes)

    def with_verdict(self, verdict: Verdict) -> Plan:
        return replace(self, verdict=verdict)
