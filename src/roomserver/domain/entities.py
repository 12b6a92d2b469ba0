"""Declared entities: the roster the operator manages, with the reference hub's validation rules and codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from roomcontract.entities import COMMANDS_FROM, ENTITY_KINDS, VISIBILITIES
from roomserver.domain.identifiers import CAPABILITY, check_entity_id
from roomserver.errors import bad_request


@dataclass(frozen=True)
class EntityPolicy:
    """Per-entity policy; keys are snake_case on the wire, as the reference hub speaks them."""

    allow_commands_from: str = "any"
    sandbox_mode: bool = False
    env_whitelist: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "allow_commands_from": self.allow_commands_from,
            "sandbox_mode": self.sandbox_mode,
            "env_whitelist": list(self.env_whitelist),
            "scopes": list(self.scopes),
        }


@dataclass(frozen=True)
class Entity:
    """One declared member of a room (presence is separate: see `sessions`)."""

    id: str
    kind: str
    display_name: str | None = None
    visibility: str = "team"
    owner_user_id: str | None = None
    capabilities: tuple[str, ...] = ()
    policy: EntityPolicy = field(default_factory=EntityPolicy)

    def to_wire(self, *, connected: bool | None = None) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "displayName": self.display_name,
            "visibility": self.visibility,
            "ownerUserId": self.owner_user_id,
            "capabilities": list(self.capabilities),
            "policy": self.policy.to_wire(),
        }
        if connected is not None:
            wire["connected"] = connected
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Entity:
        """Inverse of `to_wire` for stored (already validated) entities."""
        policy = wire["policy"]
        return cls(
            id=wire["id"],
            kind=wire["kind"],
            display_name=wire["displayName"],
            visibility=wire["visibility"],
            owner_user_id=wire["ownerUserId"],
            capabilities=tuple(wire["capabilities"]),
            policy=EntityPolicy(
                allow_commands_from=policy["allow_commands_from"],
                sandbox_mode=policy["sandbox_mode"],
                env_whitelist=tuple(policy["env_whitelist"]),
                scopes=tuple(policy["scopes"]),
            ),
        )


def make_entity(
    entity_id: str,
    kind: str,
    *,
    display_name: str | None = None,
    visibility: str | None = None,
    owner_user_id: str | None = None,
    capabilities: Sequence[str] = (),
    allow_commands_from: str | None = None,
    sandbox_mode: bool = False,
    env_whitelist: Sequence[str] = (),
    scopes: Sequence[str] = (),
) -> Entity:
    """Validate and normalise an entity as the reference hub's Join does, with its error codes.

    Fixes of the reference (docs/compatibility.md): `visibility` and `allow_commands_from` are checked
    against their enumerations, `kind` is stored lower-case, and a blank visibility means `team`.
    """
    check_entity_id(entity_id, field="entity.id")
    if not kind.strip():
        raise bad_request("INVALID_ENTITY_SPEC", "entity.kind is required")
    if kind.lower() not in ENTITY_KINDS:
        raise bad_request("INVALID_ENTITY_KIND", f"entity.kind must be one of: {', '.join(ENTITY_KINDS)}")
    for capability in capabilities:
        if not CAPABILITY.fullmatch(capability):
            raise bad_request(
                "INVALID_CAPABILITY", f"capability '{capability}' must match pattern: {CAPABILITY.pattern}"
            )
    chosen_visibility = (visibility or "team").lower()
    if chosen_visibility not in VISIBILITIES:
        raise bad_request(
            "INVALID_ENTITY_SPEC", f"entity.visibility must be one of: {', '.join(VISIBILITIES)}"
        )
    if chosen_visibility == "owner" and not owner_user_id:
        raise bad_request("INVALID_ENTITY_SPEC", "owner visibility requires ownerUserId")
    commands_from = (allow_commands_from or "any").lower()
    if commands_from not in COMMANDS_FROM:
        raise bad_request(
            "INVALID_ENTITY_SPEC",
            f"entity.policy.allow_commands_from must be one of: {', '.join(COMMANDS_FROM)}",
        )
    return Entity(
        id=entity_id,
        kind=kind.lower(),
        display_name=display_name,
        visibility=chosen_visibility,
        owner_user_id=owner_user_id,
        capabilities=tuple(capabilities),
        policy=EntityPolicy(
            allow_commands_from=commands_from,
            sandbox_mode=sandbox_mode,
            env_whitelist=tuple(env_whitelist),
            scopes=tuple(scopes),
        ),
    )
