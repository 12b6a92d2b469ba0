"""RoomSpec: models, loading (YAML/JSON with positions), validation, upgrade checks, JSON Schema."""

from roomoperator.spec.models import (
    ArtifactSpec,
    EntityPolicy,
    EntitySpec,
    Metadata,
    Policies,
    ResourceSpec,
    RoomSpec,
    RoomSpecBody,
)

__all__ = [
    "ArtifactSpec",
    "EntityPolicy",
    "EntitySpec",
    "Metadata",
    "Policies",
    "ResourceSpec",
    "RoomSpec",
    "RoomSpecBody",
]
