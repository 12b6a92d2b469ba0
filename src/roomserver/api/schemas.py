"""Request bodies (validated) and response shapes (documented in /openapi.json, checked by the tests)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from roomcontract.entities import CommandsFrom, EntityKind, Membership, Visibility
from roomcontract.identifiers import PROVIDER_URL, ROOM_ID
from roomserver.domain.entities import Entity, make_entity
from roomserver.errors import RoomServerError, bad_request


def invalid_request(errors: Sequence[Any]) -> RoomServerError:
    """400 E1 `INVALID_REQUEST` naming every field of pydantic's `errors()` (a route's body, or a batch
    item's), as `field.path: message; ...` (never FastAPI's 422)."""
    problems = "; ".join(f"{_field_path(tuple(err['loc']))}: {err['msg']}" for err in errors)
    return RoomServerError(400, problems, code="INVALID_REQUEST")


def _field_path(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location if part != "body") or "body"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests ---------------------------------------------------------------------------------------------


class PolicyBody(Strict):
    """`policy` of an entity (snake_case keys, as the reference hub speaks them)."""

    allow_commands_from: str | None = None
    sandbox_mode: StrictBool = False
    env_whitelist: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)


class EntityBody(Strict):
    """The integration guide's join body; `roomId` (optional) must equal the path."""

    roomId: str | None = None
    entityId: str | None = None
    kind: str
    displayName: str | None = None
    visibility: str | None = None
    ownerUserId: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    policy: PolicyBody | None = None

    def entity(self, room_id: str, entity_id: str | None = None) -> Entity:
        """The validated entity this body declares in `room_id`: under `entity_id` (a PUT's path, which
        the body's `entityId` must equal when given), else under the body's `entityId`, then required."""
        if self.roomId is not None and self.roomId != room_id:
            raise bad_request("INVALID_ENTITY_SPEC", "roomId in the body must equal the roomId of the path")
        if entity_id is None:
            if self.entityId is None:
                raise bad_request("INVALID_ENTITY_SPEC", "entityId is required")
            entity_id = self.entityId
        elif self.entityId is not None and self.entityId != entity_id:
            raise bad_request(
                "INVALID_ENTITY_SPEC", "entityId in the body must equal the entityId of the path"
            )
        return self.to_entity(entity_id)

    def to_entity(self, entity_id: str) -> Entity:
        policy = self.policy or PolicyBody()
        return make_entity(
            entity_id,
            self.kind,
            display_name=self.displayName,
            visibility=self.visibility,
            owner_user_id=self.ownerUserId,
            capabilities=self.capabilities,
            allow_commands_from=policy.allow_commands_from,
            sandbox_mode=policy.sandbox_mode,
            env_whitelist=policy.env_whitelist,
            scopes=policy.scopes,
        )


class PoliciesBody(Strict):
    """Any subset of the room policies."""

    dmVisibilityDefault: str | None = None
    allowResourceCreation: StrictBool | None = None
    maxArtifactsPerEntity: StrictInt | None = None

    def changes(self) -> dict[str, Any]:
        """The keyword arguments of `RoomPolicies.updated` (None keeps a value)."""
        return {
            "dm_visibility_default": self.dmVisibilityDefault,
            "allow_resource_creation": self.allowResourceCreation,
            "max_artifacts_per_entity": self.maxArtifactsPerEntity,
        }


class ManagerBody(Strict):
    """`PUT /rooms/{roomId}/manager`: the operator that manages the room, and where its API is."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://\S+$")
    membership: Membership = "closed"
    """`closed`: only declared entities may join the room over the hub (the operator keeps its roster);
    `open`: anyone with a token may join too (the spec's `membership: open`)."""

    def record(self) -> dict[str, Any]:
        """The manager as `repository.set_manager` records it."""
        return {"name": self.name, "url": self.url, "membership": self.membership}


MAX_PROVIDERS_PER_LOAD = 256


class ProviderBody(Strict):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$")
    url: str = Field(min_length=1, max_length=2048, pattern=PROVIDER_URL)
    """`ws(s)://` the reference dialect, `http(s)://` standard MCP, `stdio:<name>` a configured command."""
    visibility: str = "room"


class LoadBody(BaseModel):
    """`POST /admin/mcp/load` (unknown keys ignored, as the reference binds them)."""

    providers: list[ProviderBody] | None = Field(default=None, max_length=MAX_PROVIDERS_PER_LOAD)
    roomId: str | None = Field(default=None, max_length=64, pattern=ROOM_ID)
    """The room whose spec declares these providers (extension); without it they serve every room."""


PROMOTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "`{name}` marks the room artifact's latest version promoted; with `fromEntity` it copies "
    "the latest version of that entity's artifact into the room workspace (reference form).",
    "properties": {
        "name": {"type": "string"},
        "fromEntity": {"type": "string"},
        "as": {"type": "string"},
        "metadata": {"type": "object"},
    },
    "required": ["name"],
}

UPLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "string",
            "description": 'JSON {"name","type","workspace"?,"tags"?,"fingerprint"?,"metadata"?}',
        },
        "data": {"type": "string", "format": "binary"},
        "parents": {"type": "string", "description": "JSON array of strings"},
        "port": {"type": "string"},
        "entityId": {"type": "string", "description": "must equal the caller's entity when given"},
    },
    "required": ["spec", "data"],
}


# --- responses (documentation and test oracles) -----------------------------------------------------------


class PolicyOut(Strict):
    allow_commands_from: CommandsFrom
    sandbox_mode: bool
    env_whitelist: list[str]
    scopes: list[str]


class EntityOut(Strict):
    id: str
    kind: EntityKind
    displayName: str | None
    visibility: Visibility
    ownerUserId: str | None
    capabilities: list[str]
    policy: PolicyOut
    connected: bool | None = None
    sessions: int | None = Field(default=None, description="live hub sessions (room state only)")
    declared: bool | None = Field(default=None, description="false: connected but undeclared (state only)")


class PoliciesOut(Strict):
    dmVisibilityDefault: Visibility
    allowResourceCreation: bool
    maxArtifactsPerEntity: int


class ArtifactStateOut(Strict):
    name: str
    type: str
    workspace: str
    tags: list[str]
    sha256: str
    size: int
    version: int
    promoted: bool
    fingerprint: str | None
    createdAt: str
    updatedAt: str
    createdBy: str | None
    """Who wrote the first version (the `X-Entity-Id` member, else the token's name); null if not known."""
    updatedBy: str | None
    """Who wrote the latest version."""


class ManagerOut(Strict):
    name: str
    url: str | None
    since: str
    membership: Membership = "closed"


class ResourceOut(Strict):
    name: str
    type: str
    status: Literal["idle", "connecting", "connected", "error"]
    config: dict[str, Any]


class RoomStateOut(Strict):
    roomId: str
    status: Literal["init", "active", "paused", "ended"]
    revision: int
    entities: list[EntityOut]
    artifacts: list[ArtifactStateOut]
    policies: PoliciesOut
    resources: list[ResourceOut]
    manager: ManagerOut | None


class OriginOut(Strict):
    room: str
    entity: str
    port: str | None
    workspace: Literal["room", "entity"]
    channel: str | None


class ManifestOut(Strict):
    name: str
    type: str
    path: str
    size: int
    sha256: str
    origin: OriginOut
    version: int
    parents: list[str] | None
    metadata: dict[str, Any] | None
    ts: str
    workspace: str
    tags: list[str]
    promoted: bool
    fingerprint: str | None
    createdBy: str | None


class ManifestEnvelope(Strict):
    manifest: ManifestOut


class ManifestList(Strict):
    items: list[ManifestOut]


class VersionList(Strict):
    items: list[ManifestOut]
    deleted: bool


class HashOut(Strict):
    hash: str


class WhoamiOut(Strict):
    name: str
    scopes: list[str]
    features: list[str] = Field(
        description="optional capabilities of this server: `batch.v1`, `fencing.v1`, `events.actor.v1`"
    )


class BatchItemError(BaseModel):
    """The single endpoint's error body (E1 with `code`, E2 without)."""

    error: str
    code: str | None = None
    message: str


class BatchResultOut(Strict):
    index: int
    op: str
    status: int
    body: Any = Field(default=None, description="the single endpoint's answer (absent for 204 and errors)")
    error: BatchItemError | None = None


class BatchOut(Strict):
    roomId: str
    results: list[BatchResultOut]


class ProviderStatusOut(Strict):
    id: str
    state: Literal["idle", "connecting", "connected", "error"]
    attempts: int
    lastChangeAt: int
    lastError: str | None
    nextRetryAt: int | None


class McpStatusOut(Strict):
    providers: list[ProviderStatusOut]


class LoadOut(Strict):
    message: str
    count: int


class ErrorOut(BaseModel):
    """E1 (`code` present) or E2 (`code` absent) error body."""

    error: str
    code: str | None = None
    message: str
