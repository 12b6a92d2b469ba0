"""RoomSpec models: the file users write and keep in git, as typed pydantic v2 objects.

Python attributes are snake_case; the wire and YAML keys are camelCase (`roomId`, `seedFrom`), except the
entity `policy` keys, which are snake_case on the wire (as the room server speaks them) and accepted in
camelCase too. Unknown keys are errors (`extra="forbid"`); the validation module turns them into
"did you mean" messages with file positions.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from roomcontract import identifiers as patterns
from roomcontract import limits
from roomcontract.entities import CommandsFrom, EntityKind, Membership, Visibility
from roomoperator.spec.seeds import check_seed_path

# Identifier formats: one rule on both sides of the wire, the shared contract's (`roomcontract.identifiers`).
ROOM_ID_PATTERN = patterns.ROOM_ID
ENTITY_ID_PATTERN = patterns.ENTITY_ID
CAPABILITY_PATTERN = patterns.CAPABILITY
ARTIFACT_NAME_PATTERN = patterns.ARTIFACT_NAME
WORKSPACE_PATTERN = patterns.WORKSPACE_LABEL
TAG_PATTERN = patterns.TAG
RESOURCE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"
PROVIDER_URL_PATTERN = patterns.PROVIDER_URL
NON_BLANK_PATTERN = r"\S"
RESERVED_ARTIFACT_NAMES = patterns.RESERVED_ARTIFACT_NAMES
MAX_INT = 2**31 - 1
"""Largest integer of a spec (a version, a limit): the reference's C# `int`, the store's integer column."""

ID_FORMATS: dict[str, str] = {
    ROOM_ID_PATTERN: "a room id: 'room-' then 6 or more letters, digits, '-' or '_' (room-abc123)",
    ENTITY_ID_PATTERN: "an entity id: 'E-' then 2-64 letters, digits, '-' or '_'",
    CAPABILITY_PATTERN: "a capability: lower-case words of a-z, 0-9 and '_' joined by '.' (read_artifacts)",
    ARTIFACT_NAME_PATTERN: "an artifact name: 1-128 letters, digits, '.', '-', '_', starting alphanumeric",
    WORKSPACE_PATTERN: "a workspace label: 1-64 letters, digits, '-' or '_', starting with a letter or digit",
    TAG_PATTERN: "a tag: 1-64 letters, digits or '.', '_', ':', '/', '-' (no spaces or commas)",
    RESOURCE_NAME_PATTERN: "an MCP provider id: 1-128 letters, digits or '.', '_', '@', ':', '-'",
    NON_BLANK_PATTERN: "a non-blank string",
}
"""What each identifier pattern means, in words: the validation messages and docs/spec.md use these."""

Capability = Annotated[str, Field(pattern=CAPABILITY_PATTERN, max_length=limits.MAX_CAPABILITY_LENGTH)]
Tag = Annotated[str, Field(pattern=TAG_PATTERN)]

MissingDependency = Literal["skip", "fail"]
RollbackMode = Literal["never", "on-failure"]


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


AnyCase = BeforeValidator(_lower)
"""An enumerated value matched case-insensitively and kept lower-case (`Team` is `team`), as the reference
room server compared `owner` and `orchestrator`."""
NullIsEmpty = BeforeValidator(lambda value: () if value is None else value)
"""JSON `null` for a list is the empty list, as the reference room server normalised `capabilities`."""
NullIsDefault = BeforeValidator(lambda value: {} if value is None else value)
"""JSON `null` for an object is its defaults, as the reference room server normalised `policy`."""


class SpecModel(BaseModel):
    """Base of every spec object: camelCase aliases, unknown keys refused, values immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class EntityPolicy(SpecModel):
    """Command and sandbox policy of one entity; keys accepted in snake_case and camelCase."""

    allow_commands_from: Annotated[CommandsFrom, AnyCase] = Field(
        default="any",
        validation_alias=AliasChoices("allow_commands_from", "allowCommandsFrom"),
        serialization_alias="allow_commands_from",
    )
    """Who may send this entity commands: anyone, the room's orchestrator, or its owner."""
    sandbox_mode: bool = Field(
        default=False,
        validation_alias=AliasChoices("sandbox_mode", "sandboxMode"),
        serialization_alias="sandbox_mode",
    )
    """Run the entity's commands in a sandbox."""
    env_whitelist: Annotated[
        tuple[Annotated[str, Field(max_length=limits.MAX_ENV_NAME_LENGTH)], ...], NullIsEmpty
    ] = Field(
        default=(),
        max_length=limits.MAX_ENV_WHITELIST,
        validation_alias=AliasChoices("env_whitelist", "envWhitelist"),
        serialization_alias="env_whitelist",
    )
    """Environment variables the entity may read."""
    scopes: Annotated[
        tuple[Annotated[str, Field(max_length=limits.MAX_POLICY_SCOPE_LENGTH)], ...], NullIsEmpty
    ] = Field(default=(), max_length=limits.MAX_POLICY_SCOPES)
    """Permission scopes granted to the entity."""


class EntitySpec(SpecModel):
    """A declared room member: human, agent, npc or orchestrator."""

    id: str = Field(pattern=ENTITY_ID_PATTERN)
    """Entity id, unique in the room: `E-` then 2-64 letters, digits, `-` or `_`."""
    kind: EntityKind
    """What the member is; matched case-insensitively, stored lower-case."""
    display_name: str | None = Field(default=None, max_length=limits.MAX_DISPLAY_NAME)
    """Name shown to people in the room."""
    visibility: Annotated[Visibility, AnyCase] = "team"
    """Who sees the entity; `owner` needs `ownerUserId`."""
    owner_user_id: str | None = Field(default=None, max_length=limits.MAX_OWNER_USER_ID)
    """The user who owns the entity (required when visibility is owner)."""
    capabilities: Annotated[tuple[Capability, ...], NullIsEmpty] = Field(
        default=(), max_length=limits.MAX_CAPABILITIES
    )
    """What the entity can do, e.g. `read_artifacts` or `text.generate`."""
    policy: Annotated[EntityPolicy, NullIsDefault] = EntityPolicy()
    """Command and sandbox policy."""
    protect: bool = False
    """Never kick this entity, even when it leaves the spec, until a spec without `protect` is applied."""

    @field_validator("kind", mode="before")
    @classmethod
    def _kind_case_insensitive(cls, value: Any) -> Any:
        # The reference validator compares kinds case-insensitively; we store the canonical lower case.
        return value.lower() if isinstance(value, str) else value


class ArtifactSpec(SpecModel):
    """An artifact the room must hold, optionally seeded from a file beside the spec."""

    name: str = Field(pattern=ARTIFACT_NAME_PATTERN)
    """Artifact name, unique in the room: a safe file name (no `/`, `..`, `manifest.json`, `*.tmp`)."""
    type: str = Field(pattern=NON_BLANK_PATTERN)
    """Artifact type, e.g. `document` or `dataset`."""
    workspace: str = Field(pattern=WORKSPACE_PATTERN)
    """Workspace label the artifact belongs to, e.g. `shared`."""
    tags: Annotated[tuple[Tag, ...], NullIsEmpty] = Field(default=(), max_length=limits.MAX_TAGS)
    """Free tags (no commas: the fingerprint joins them with `,`); order matters to the fingerprint."""
    seed_from: str | None = None
    """File whose bytes seed the artifact, relative to the spec file's folder and never leaving it."""
    promote_after_seed: bool = False
    """Mark the latest version promoted once seeded."""
    depends_on: Annotated[tuple[str, ...], NullIsEmpty] = ()
    """Artifacts of this spec to seed before this one (no cycles)."""
    protect: bool = False
    """Never delete this artifact, even when it leaves the spec, until a spec without `protect` is applied."""

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
    """Default visibility of direct messages in the room; empty or null means `team` (with a warning)."""
    allow_resource_creation: bool = False
    """Whether room members may create resources."""
    max_artifacts_per_entity: int = Field(default=100, ge=0, le=MAX_INT)
    """Most artifacts one entity may own."""

    @field_validator("dm_visibility_default", mode="before")
    @classmethod
    def _blank_is_team(cls, value: object) -> object:
        """The reference treated a null or blank value as not set: `team`, with a warning; any case."""
        return "team" if value is None or (isinstance(value, str) and not value.strip()) else _lower(value)


class ResourceSpec(SpecModel):
    """A tool the room needs (e.g. an MCP provider), mapped onto the room server's MCP registry."""

    name: str = Field(pattern=RESOURCE_NAME_PATTERN)
    """Resource name, unique in the spec; the MCP provider id on the room server."""
    type: str = Field(pattern=NON_BLANK_PATTERN)
    """Resource type, e.g. `mcp-tool`."""
    config: Annotated[dict[str, Any], NullIsDefault] = Field(
        default_factory=dict,
        json_schema_extra={
            "properties": {
                key: {"type": "string", "pattern": PROVIDER_URL_PATTERN, "maxLength": 2048}
                for key in ("endpoint", "url")
            }
        },
    )
    """Tool settings; `endpoint` is the provider URL, `timeout` e.g. `30s`; other keys are kept as given."""
    depends_on: Annotated[tuple[str, ...], NullIsEmpty] = ()
    """Entity ids or artifact names of this spec the resource needs."""
    on_missing_dependency: MissingDependency = "skip"
    """What to do when a dependency is not in the room: skip the resource this run, or fail the run."""

    @field_validator("config")
    @classmethod
    def _provider_url(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The room server loads `endpoint` (or `url`) as the MCP provider URL, and refuses anything else.
        for key in ("endpoint", "url"):
            url = value.get(key)
            if key in value and not (
                isinstance(url, str) and len(url) <= 2048 and re.match(PROVIDER_URL_PATTERN, url)
            ):
                raise ValueError(f"{key} must be {patterns.PROVIDER_URL_RULE} (got {url!r})")
        return value


class Metadata(SpecModel):
    """Spec identity: a name and a monotonically increasing version."""

    name: str = Field(pattern=NON_BLANK_PATTERN)
    """Spec name (free text, shown in status and audit)."""
    version: int = Field(ge=1, le=MAX_INT)
    """Spec version (>= 1); a changed spec must carry a greater version than the last applied one."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Free key/value labels (strings), for selection and display."""
    annotations: dict[str, str] = Field(default_factory=dict)
    """Free key/value annotations (strings), for tools and people."""


class RoomSpecBody(SpecModel):
    """The desired state of one room."""

    room_id: str = Field(pattern=ROOM_ID_PATTERN, max_length=patterns.ROOM_ID_MAX_LENGTH)
    """The managed room: `room-` then at least 6 letters, digits, `-` or `_` (the reference room server's
    rule), at most 64 characters in all."""
    entities: tuple[EntitySpec, ...] = ()
    """Every member the room must have; with `membership: closed` others are removed."""
    membership: Membership = "closed"
    """`closed`: the entities are the room's whole roster (undeclared ones are removed); `open`: undeclared
    members stay and are reported as unmanaged."""
    artifacts: tuple[ArtifactSpec, ...] = ()
    """Every artifact the room must hold; an undeclared one is deleted only when the operator created it."""
    policies: Policies = Policies()
    """Room-level policies."""
    resources: tuple[ResourceSpec, ...] = ()
    """Tools (MCP providers) the room needs."""
    rollback: RollbackMode = "never"
    """`on-failure` undoes a run's applied changes when any change fails; `never` keeps them."""


class RoomSpec(SpecModel):
    """One RoomSpec document (`apiVersion: v1`, `kind: RoomSpec`)."""

    api_version: Literal["v1"] = "v1"
    """Always `v1`."""
    kind: Literal["RoomSpec"] = "RoomSpec"
    """Always `RoomSpec`."""
    metadata: Metadata
    """Name, version, labels and annotations of the spec."""
    spec: RoomSpecBody
    """The room's desired state."""

    @property
    def room_id(self) -> str:
        return self.spec.room_id

    def to_wire(self) -> dict[str, Any]:
        """The JSON form (camelCase keys, snake_case entity policy keys), as accepted by `POST /apply`."""
        return self.model_dump(mode="json", by_alias=True)
