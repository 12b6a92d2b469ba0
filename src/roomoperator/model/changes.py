"""The vocabulary of a plan: typed changes, why an item is blocked, the guardrail verdict, the plan itself.

A `Change` is one thing the engine would do to the room (`op` on `kind` `name`), with the reason and the
before/after values that justify it, each a typed payload: an entity's declared fields (`EntityBody`),
some fields by wire name (`Fields`), a seed's content (`SeedContent`, `SeedSource`), an MCP provider
(`Provider`) or a policy value. Every payload has the JSON form the plan format shows (`to_json`). A
change that cannot be made carries `blocked`; it is shown in the plan and the result, and never
reported as done.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from roomcontract import scopes
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
    Kind.ENTITY: scopes.ENTITIES_WRITE,
    Kind.ARTIFACT: scopes.ARTIFACTS_WRITE,
    Kind.POLICY: scopes.POLICIES_WRITE,
    Kind.RESOURCE: scopes.ADMIN,
}

REMOVALS = frozenset({Op.KICK, Op.DELETE_ARTIFACT})


JsonValue = Any
"""A value as JSON has it (str, int, float, bool, None, lists and objects of those)."""
PolicyValue = str | int | bool


class _DeclaredPolicy(Protocol):
    @property
    def allow_commands_from(self) -> str: ...
    @property
    def sandbox_mode(self) -> bool: ...
    @property
    def env_whitelist(self) -> tuple[str, ...]: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...


class DeclaredEntity(Protocol):
    """An entity as a spec declares it or as the room server reports it (the same field names)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def display_name(self) -> str | None: ...
    @property
    def visibility(self) -> str: ...
    @property
    def owner_user_id(self) -> str | None: ...
    @property
    def capabilities(self) -> tuple[str, ...]: ...
    @property
    def policy(self) -> _DeclaredPolicy: ...


@dataclass(frozen=True)
class EntityBody:
    """An entity's declared fields: the contract's EntityBody (`PUT /rooms/{roomId}/entities/{id}`)."""

    entity_id: str
    kind: str
    display_name: str | None
    visibility: str
    owner_user_id: str | None
    capabilities: tuple[str, ...]
    allow_commands_from: str
    sandbox_mode: bool
    env_whitelist: tuple[str, ...]
    scopes: tuple[str, ...]

    @classmethod
    def of(cls, entity: DeclaredEntity) -> EntityBody:
        policy = entity.policy
        return cls(
            entity_id=entity.id,
            kind=entity.kind,
            display_name=entity.display_name,
            visibility=entity.visibility,
            owner_user_id=entity.owner_user_id,
            capabilities=tuple(entity.capabilities),
            allow_commands_from=policy.allow_commands_from,
            sandbox_mode=policy.sandbox_mode,
            env_whitelist=tuple(policy.env_whitelist),
            scopes=tuple(policy.scopes),
        )

    def to_json(self) -> dict[str, JsonValue]:
        """The wire body; entity `policy` keys are snake_case on the wire."""
        return {
            "entityId": self.entity_id,
            "kind": self.kind,
            "displayName": self.display_name,
            "visibility": self.visibility,
            "ownerUserId": self.owner_user_id,
            "capabilities": list(self.capabilities),
            "policy": {
                "allow_commands_from": self.allow_commands_from,
                "sandbox_mode": self.sandbox_mode,
                "env_whitelist": list(self.env_whitelist),
                "scopes": list(self.scopes),
            },
        }

    def comparable(self) -> dict[str, JsonValue]:
        """The fields an update compares, by wire name; list fields as sorted sets (the server may
        reorder them)."""
        return {
            "kind": self.kind,
            "displayName": self.display_name,
            "visibility": self.visibility,
            "ownerUserId": self.owner_user_id,
            "capabilities": sorted(set(self.capabilities)),
            "policy": {
                "allow_commands_from": self.allow_commands_from,
                "sandbox_mode": self.sandbox_mode,
                "env_whitelist": sorted(set(self.env_whitelist)),
                "scopes": sorted(set(self.scopes)),
            },
        }


@dataclass(frozen=True)
class Fields:
    """Some fields of an entity, artifact or provider, by wire name: what an update changes, or what a
    removal takes away."""

    values: dict[str, JsonValue]

    def to_json(self) -> dict[str, JsonValue]:
        return dict(self.values)


@dataclass(frozen=True)
class SeedContent:
    """A seed file's content and the artifact labels it is uploaded with (seed, reseed)."""

    type: str
    workspace: str
    tags: tuple[str, ...]
    sha256: str
    size: int
    fingerprint: str | None
    """The reference fingerprint when known (planning does not compute it: the upload does)."""
    seed_from: str

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "type": self.type,
            "workspace": self.workspace,
            "tags": list(self.tags),
            "sha256": self.sha256,
            "size": self.size,
            "fingerprint": self.fingerprint,
            "seedFrom": self.seed_from,
        }


@dataclass(frozen=True)
class SeedSource:
    """A seed whose content cannot be read: only where it should come from."""

    seed_from: str

    def to_json(self) -> dict[str, JsonValue]:
        return {"seedFrom": self.seed_from}


@dataclass(frozen=True)
class Provider:
    """The MCP provider a resource maps to (`POST /admin/mcp/load`)."""

    id: str
    url: JsonValue
    visibility: JsonValue = None

    def to_json(self) -> dict[str, JsonValue]:
        body: dict[str, JsonValue] = {"id": self.id, "url": self.url}
        if self.visibility is not None:
            body["visibility"] = self.visibility
        return body


Payload = EntityBody | Fields | SeedContent | SeedSource | Provider


def payload_json(value: Payload | PolicyValue | None) -> JsonValue:
    """A change's before or after value as the plan format shows it."""
    if isinstance(value, EntityBody | Fields | SeedContent | SeedSource | Provider):
        return value.to_json()
    return value


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
    before: Payload | PolicyValue | None = None
    after: Payload | PolicyValue | None = None
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
class Unmanaged:
    """An item in the room that the spec does not declare and the operator leaves alone: an artifact it did
    not create (a member's work), or a member of a room with `membership: open`. Not a change."""

    kind: Kind
    name: str
    created_by: str | None = None

    def to_json(self) -> dict[str, JsonValue]:
        return {"kind": str(self.kind), "name": self.name, "createdBy": self.created_by}


@dataclass(frozen=True)
class Skipped:
    """An item the spec declares that the operator does not act on (for now a resource while
    `features.resources` is off): shown with its reason, never a change, never blocking convergence."""

    kind: Kind
    name: str
    code: BlockCode
    reason: str

    def to_json(self) -> dict[str, JsonValue]:
        return {"kind": str(self.kind), "name": self.name, "code": str(self.code), "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """Every change that would bring the room to its spec, in apply order, and the guardrail verdict."""

    room_id: str
    spec_name: str
    spec_version: int
    observed_revision: int
    changes: tuple[Change, ...] = ()
    verdict: Verdict = Verdict()
    present: tuple[str, ...] = ()
    """Declared entities the room already has, in spec order (the reference's `toEnsure`)."""
    unmanaged: tuple[Unmanaged, ...] = ()
    """Undeclared items the operator keeps (entities first, then artifacts, in room order)."""
    skipped: tuple[Skipped, ...] = ()
    """Declared items the operator does not act on, with why (spec order)."""

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
