"""Typed shapes of the room server's answers (`docs/contract.md`): the room state and the identity.

An artifact says who created it and who wrote its latest version (`createdBy`, `updatedBy`: a member id or
a token name), so the planner deletes only what the operator made; the room says which operator manages it.

Unknown keys are ignored, so a newer server does not break an older operator; entity `policy` keys are
snake_case on the wire.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from roomcontract.entities import Membership


class WireModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class ObservedEntityPolicy(WireModel):
    allow_commands_from: str = Field(default="any", alias="allow_commands_from")
    sandbox_mode: bool = Field(default=False, alias="sandbox_mode")
    env_whitelist: tuple[str, ...] = Field(default=(), alias="env_whitelist")
    scopes: tuple[str, ...] = ()


class ObservedEntity(WireModel):
    id: str
    kind: str
    display_name: str | None = None
    visibility: str = "team"
    owner_user_id: str | None = None
    capabilities: tuple[str, ...] = ()
    policy: ObservedEntityPolicy = ObservedEntityPolicy()
    connected: bool = False


class ObservedArtifact(WireModel):
    name: str
    type: str
    workspace: str
    tags: tuple[str, ...] = ()
    sha256: str
    size: int = 0
    version: int = 1
    promoted: bool = False
    fingerprint: str | None = None
    created_by: str | None = None
    """Who wrote the first version; None when the server did not record it (treated as not the operator's)."""
    updated_by: str | None = None
    """Who wrote the latest version."""


class ObservedPolicies(WireModel):
    dm_visibility_default: str = "team"
    allow_resource_creation: bool = False
    max_artifacts_per_entity: int = 100


class ObservedResource(WireModel):
    name: str
    type: str = "mcp-tool"
    status: str = "idle"
    config: dict[str, Any] = Field(default_factory=dict)


class ObservedManager(WireModel):
    """The operator that manages a room (`PUT /rooms/{roomId}/manager`)."""

    name: str
    url: str | None = None
    since: str | None = None
    membership: Membership = "closed"


class ObservedRoom(WireModel):
    """`GET /room/{roomId}/state`: the one read a plan is made from."""

    room_id: str
    status: str = "init"
    revision: int = 0
    entities: tuple[ObservedEntity, ...] = ()
    artifacts: tuple[ObservedArtifact, ...] = ()
    policies: ObservedPolicies = ObservedPolicies()
    resources: tuple[ObservedResource, ...] = ()
    manager: ObservedManager | None = None
    etag: str | None = Field(default=None, exclude=True)
    """The `ETag` the server sent with this state (a header, not part of the body)."""


class Identity(WireModel):
    """`GET /auth/whoami`: who the operator's token is and what it may do."""

    name: str
    scopes: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()
    """What the server offers beyond the reference contract (`batch.v1`); none when it does not say."""
