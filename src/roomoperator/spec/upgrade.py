"""Upgrade check: may this spec replace the one last applied to the same room?

The reference's SpecUpgradeValidator (never wired in there), with its message texts, and one fix:
re-applying the very same spec at the same version is fine (applies are idempotent), while a
different spec must carry a greater `metadata.version`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roomoperator.spec.models import RoomSpec


@dataclass
class UpgradeReport:
    """The verdict on replacing `current` by `new`: errors forbid it, warnings are for the user to read."""

    current_version: int
    new_version: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check_upgrade(current: RoomSpec, new: RoomSpec) -> UpgradeReport:
    """Compare `new` with the last applied spec `current` of the same room."""
    report = UpgradeReport(current.metadata.version, new.metadata.version)
    if new == current:
        return report
    if report.new_version <= report.current_version:
        report.errors.append(
            f"New version ({report.new_version}) must be greater than"
            f" current version ({report.current_version})"
        )
        return report
    if new.room_id != current.room_id:
        report.errors.append("RoomId cannot be changed")
        return report
    kept_entities = {entity.id for entity in new.spec.entities}
    removed_entities = [entity.id for entity in current.spec.entities if entity.id not in kept_entities]
    if removed_entities:
        report.warnings.append(f"Entities will be removed: {', '.join(removed_entities)}")
    kept_artifacts = {artifact.name for artifact in new.spec.artifacts}
    removed_artifacts = [
        artifact.name for artifact in current.spec.artifacts if artifact.name not in kept_artifacts
    ]
    if removed_artifacts:
        report.warnings.append(f"Artifacts will be removed: {', '.join(removed_artifacts)}")
    return report
