"""RoomSpec: models, loading (YAML/JSON with positions), validation, upgrade checks, JSON Schema."""

from roomoperator.spec.errors import SpecError, SpecIssue
from roomoperator.spec.loading import LoadedSpec, dump_yaml, load_data, load_file, load_text
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
from roomoperator.spec.seeds import SeedPathError, resolve_seed_path
from roomoperator.spec.upgrade import UpgradeReport, check_upgrade

__all__ = [
    "ArtifactSpec",
    "EntityPolicy",
    "EntitySpec",
    "LoadedSpec",
    "Metadata",
    "Policies",
    "ResourceSpec",
    "RoomSpec",
    "RoomSpecBody",
    "SeedPathError",
    "SpecError",
    "SpecIssue",
    "UpgradeReport",
    "check_upgrade",
    "dump_yaml",
    "load_data",
    "load_file",
    "load_text",
    "resolve_seed_path",
]
