"""Room policies (`dmVisibilityDefault`, `allowResourceCreation`, `maxArtifactsPerEntity`) and updates."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from roomcontract.entities import VISIBILITIES
from roomserver.domain.limits import MAX_ARTIFACTS_PER_ENTITY
from roomserver.errors import bad_request


@dataclass(frozen=True)
class RoomPolicies:
    """All three values are always present; the defaults hold until set."""

    dm_visibility_default: str = "team"
    allow_resource_creation: bool = False
    max_artifacts_per_entity: int = 100

    def to_wire(self) -> dict[str, Any]:
        return {
            "dmVisibilityDefault": self.dm_visibility_default,
            "allowResourceCreation": self.allow_resource_creation,
            "maxArtifactsPerEntity": self.max_artifacts_per_entity,
        }

    def updated(
        self,
        *,
        dm_visibility_default: str | None = None,
        allow_resource_creation: bool | None = None,
        max_artifacts_per_entity: int | None = None,
    ) -> RoomPolicies:
        """These policies with the given values replaced (None keeps a value), after validation."""
        if dm_visibility_default is not None and dm_visibility_default not in VISIBILITIES:
            raise bad_request(
                "INVALID_POLICIES", f"dmVisibilityDefault must be one of: {', '.join(VISIBILITIES)}"
            )
        most = MAX_ARTIFACTS_PER_ENTITY
        if max_artifacts_per_entity is not None and not 0 <= max_artifacts_per_entity <= most:
            raise bad_request(
                "INVALID_POLICIES",
                f"maxArtifactsPerEntity must be an integer from 0 to {most}",
            )
        changes: dict[str, Any] = {
            "dm_visibility_default": dm_visibility_default,
            "allow_resource_creation": allow_resource_creation,
            "max_artifacts_per_entity": max_artifacts_per_entity,
        }
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
