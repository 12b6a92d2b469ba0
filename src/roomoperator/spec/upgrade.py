"""Upgrade check: may this spec replace the room's latest accepted one?

Two rules. `strict` is the reference's SpecUpgradeValidator (never wired in there), with its message
texts, and one fix: re-applying the very same spec at the same version is fine (applies are
idempotent), while a different spec must carry a greater `metadata.version`. `lenient` (the operator's
default) reads `metadata.version` as the author's label, as the reference's clients and documented usage
do (post a spec, edit it, post it again): a changed spec at the same version is taken with a warning, and
only a lower version is refused (`SPEC_VERSION_REGRESSION`). `force` takes a lower version too, with a
warning. Both rules keep the reference's warnings about removed entities and artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from roomoperator.model.codes import ApiCode
from roomoperator.spec.models import RoomSpec

UpgradeRule = Literal["strict", "lenient"]


@dataclass
class UpgradeReport:
    """The verdict on replacing `current` by `new`: errors forbid it (`code` says which rule), warnings
    are for the user to read."""

    current_version: int
    new_version: int
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    code: ApiCode | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def refuse(self, code: ApiCode, message: str) -> UpgradeReport:
        self.code = code
        self.errors.append(message)
        return self


def check_upgrade(
    current: RoomSpec, new: RoomSpec, *, rule: UpgradeRule = "strict", force: bool = False
) -> UpgradeReport:
    """Compare `new` with the room's latest accepted spec `current` under `rule` (`force`: take a lower
    or, under `strict`, an equal version anyway)."""
    report = UpgradeReport(current.metadata.version, new.metadata.version)
    if new == current:
        return report
    old, offered = report.current_version, report.new_version
    if rule == "strict" and offered <= old and not force:
        return report.refuse(
            ApiCode.SPEC_UPGRADE_REJECTED,
            f"New version ({offered}) must be greater than current version ({old})",
        )
    if offered < old and not force:
        return report.refuse(
            ApiCode.SPEC_VERSION_REGRESSION,
            f"New version ({offered}) is lower than current version ({old}): send X-Force: true"
            " (roomop --force) to apply it anyway, or restore a revision",
        )
    if new.room_id != current.room_id:
        return report.refuse(ApiCode.SPEC_UPGRADE_REJECTED, "RoomId cannot be changed")
    if offered < old:
        report.warnings.append(f"Forced: version {offered} replaces the higher version {old}")
    elif offered == old:
        report.warnings.append(
            f"Version {offered} is unchanged but the spec changed: accepted as a new revision"
        )
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
