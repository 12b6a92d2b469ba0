"""RoomSpec models: the file users write and keep in git, as typed pydantic v2 objects.

Python attributes are snake_case; the wire and YAML keys are camelCase (`roomId`, `seedFrom`), except the
entity `policy` keys, which are snake_case on the wire (as the room server speaks them) and accepted in
camelCase too. Unknown keys are errors (`extra="forbid"`); the validation module turns them into
"did you mean" messages with file positions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from roomoperator.spec.seeds import check_seed_path

# Identifier formats, one rule on both sides of the wire (docs/contract.md "Identifiers").
ROOM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$"
ENTITY_ID_PATTERN = r"^E-[A-Za-z0-9_-]{2,64}$"
CAPABILITY_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
WORKSPACE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
TAG_PATTERN = r"^[A-Za-z0-9._:/-]{1,64}$"
RESOURCE_NAME_PATTERN = r"^\S{1,128}$"
NON_BLANK_PATTERN = r"\S"
RESERVED_ARTIFACT_NAMES = frozenset({"manifest.json"})

ID_FORMATS: dict[str, str] = {
    ROOM_ID_PATTERN: "a room id: 3-64 letters, digits, '-' or '_', starting with a letter or digit",
    ENTITY_ID_PATTERN: "an entity id: 'E-' then 2-64 letters, digits, '-' or '_'",
    CAPABILITY_PATTERN: "a capability: lower-case words of a-z, 0-9 and '_' joined by '.' (read_artifacts)",
    ARTIFACT_NAME_PATTERN: "an artifact name: 1-128 letters, digits, '.', '-', '_', starting alphanumeric",
    WORKSPACE_PATTERN: "a workspace label: 1-64 letters, digits, '-' or '_', starting with a letter or digit",
    TAG_PATTERN: "a tag: 1-64 letters, digits or '.', '_', ':', '/', '-' (no spaces or commas)",
    RESOURCE_NAME_PATTERN: "a resource name: 1-128 characters without spaces",
    NON_BLANK_PATTERN: "a non-blank string",
}
"""What each identifier pattern means, in words: the validation messages and docs/spec.md use these."""

Capability = Annotated[str, Field(pattern=CAPABILITY_PATTERN)]
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]

EntityKind = Literal["human", "agent", "npc", "orchestrator"]
Visibility = Literal["public", "team", "owner"]
CommandsFrom = Literal["any", "orchestrator", "owner"]
MissingDependency = Literal["skip", "fail"]
RollbackMode = Literal["never", "on-failure"]


class SpecModel(BaseModel):
    """Base of every spec object: camelCase aliases, unknown keys refused, values immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class EntityPolicy(SpecModel):
    """Command and sandbox policy of one entity; keys accepted in snake_case and camelCase."""

    allow_commands_from: CommandsFrom = Field(
        default="any",
        validation_alias=AliasChoices("allow_commands_from", "allowCommandsFrom"),
        serialization_alias="allow_commands_from",
    )
    sandbox_mode: bool = Field(
        default=False,
        validation_alias=AliasChoices("sandbox_mode", "sandboxMode"),
        serialization_alias="sandbox_mode",
    )
    env_whitelist: tuple[str, ...] = Field(
        default=(),
        validation_alias=AliasChoices("env_whitelist", "envWhitelist"),
        serialization_alias="env_whitelist",
    )
    scopes: tuple[str, ...] = ()


class EntitySpec(SpecModel):
    """A declared room member: human, agent, npc or orchestrator."""

    id: str = Field(pattern=ENTITY_ID_PATTERN)
    kind: EntityKind
    display_name: str | None = None
    visibility: Visibility = "team"
    owner_user_id: str | None = None
    capabilities: tuple[Capability, ...] = ()
    policy: EntityPolicy = EntityPolicy()
    protect: bool = False

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_case_insensitive(cls, value: Any) -> Any:
        # The reference validator compares kinds case-insensitively; we store the canonical lower case.
        return value.lower() if isinstance(value, str) else value


class ArtifactSpec(SpecModel):
    """An artifact the room must hold, optionally seeded from a file beside the spec."""

    name: str = Field(pattern=ARTIFACT_NAME_PATTERN)
    type: str = Field(pattern=NON_BLANK_PATTERN)
    workspace: str = Field(pattern=WORKSPACE_PATTERN)
    tags: tuple[Tag, ...] = ()
    seed_from: str | None = None
    promote_after_seed: bool = False
    depends_on: tuple[str, ...] = ()
    protect: bool = False

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        # The room server stores artifacts as files: no parent references, no names it uses itself.
        if ".." in value:
            raise ValueError(f"must not contain '..' (got {value!r})")
        if value in RESERVED_ARTIFACT_NAMES or value.endswith(".tmp"):
            raise ValueError(f"is reserved by the room server (got {value!r})")
        return value

    @field_validator("seed_from")
    @classmethod
    def _relative_seed(cls, value: str | None) -> str | None:
        if value is not None:
            check_seed_path(value)
        return value


class Policies(SpecModel):
    """Room-level policies; `dmVisibilityDefault` is mandatory on the server and defaults to team."""

    dm_visibility_default: Visibility = "team"
    allow_resource_creation: bool = False
    max_artifacts_per_entity: int = Field(default=100, ge=0)


class ResourceSpec(SpecModel):
    """A tool the room needs (e.g. an MCP provider), mapped onto the room server's MCP registry."""

    name: str = Field(pattern=RESOURCE_NAME_PATTERN)
    type: str = Field(pattern=NON_BLANK_PATTERN)
    config: dict[str, Any] = Field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    on_missing_dependency: MissingDependency = "skip"


class Metadata(SpecModel):
    """Spec identity: a name and a monotonically increasing version."""

    name: str = Field(pattern=NON_BLANK_PATTERN)
    version: int = Field(ge=1)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class RoomSpecBody(SpecModel):
    """The desired state of one room."""

    room_id: str = Field(pattern=ROOM_ID_PATTERN)
    entities: tuple[EntitySpec, ...] = ()
    artifacts: tuple[ArtifactSpec, ...] = ()
    policies: Policies = Policies()
    resources: tuple[ResourceSpec, ...] = ()
    rollback: RollbackMode = "never"


class RoomSpec(SpecModel):
    """One RoomSpec document (`apiVersion: v1`, `kind: RoomSpec`)."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["RoomSpec"] = "RoomSpec"
    metadata: Metadata
    spec: RoomSpecBody

    @property
    def room_id(self) -> str:
        return self.spec.room_id

    def to_wire(self) -> dict[str, Any]:
        """The JSON form (camelCase keys, snake_case entity policy keys), as accepted by `POST /apply`."""
        return self.model_dump(mode="json", by_alias=True)
