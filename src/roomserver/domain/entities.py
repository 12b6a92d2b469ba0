"""Declared entities: the roster the operator manages, with the reference hub's validation rules and codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from roomcontract import limits
from roomcontract.entities import COMMANDS_FROM, ENTITY_KINDS, VISIBILITIES
from roomserver.domain.identifiers import CAPABILITY, check_entity_id
from roomserver.domain.limits import InputError, check_list, check_text
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


def _check_sizes(
    display_name: str | None,
    owner_user_id: str | None,
    capabilities: Sequence[str],
    env_whitelist: Sequence[str],
    scopes: Sequence[str],
) -> None:
    """The size bounds of `domain.limits` (checked first: no error message echoes an oversized value)."""
    if display_name is not None:
        check_text(display_name, field="entity.displayName", max_length=limits.MAX_DISPLAY_NAME)
    if owner_user_id is not None:
        check_text(owner_user_id, field="entity.ownerUserId", max_length=limits.MAX_OWNER_USER_ID)
    for values, name, max_items, max_length in (
        (capabilities, "entity.capabilities", limits.MAX_CAPABILITIES, limits.MAX_CAPABILITY_LENGTH),
        (env_whitelist, "entity.policy.env_whitelist", limits.MAX_ENV_WHITELIST, limits.MAX_ENV_NAME_LENGTH),
        (scopes, "entity.policy.scopes", limits.MAX_POLICY_SCOPES, limits.MAX_POLICY_SCOPE_LENGTH),
    ):
        check_list(list(values), field=name, max_items=max_items, max_length=max_length)


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
    try:
        _check_sizes(display_name, owner_user_id, capabilities, env_whitelist, scopes)
    except InputError as exc:
        raise bad_request("INVALID_ENTITY_SPEC", str(exc)) from None
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
