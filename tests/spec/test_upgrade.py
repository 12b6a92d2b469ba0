"""Upgrade check: the reference SpecUpgradeValidator's rules and texts, plus idempotent re-apply."""

from __future__ import annotations

from typing import Any

from roomoperator.spec import check_upgrade, load_data
from roomoperator.spec.models import RoomSpec
from tests.spec.documents import minimal


def spec(version: int, **body: Any) -> RoomSpec:
    data = minimal(**body)
    data["metadata"]["version"] = version
    return load_data(data)


ENTITIES = [{"id": "E-a1", "kind": "agent"}, {"id": "E-a2", "kind": "agent"}, {"id": "E-h1", "kind": "human"}]
ARTIFACTS = [{"name": n, "type": "document", "workspace": "shared"} for n in ("plan", "data", "notes")]


def test_reapplying_the_same_spec_is_fine() -> None:
    report = check_upgrade(spec(3, entities=ENTITIES), spec(3, entities=ENTITIES))
    assert report.ok
    assert (report.current_version, report.new_version, report.warnings) == (3, 3, [])


def test_a_changed_spec_at_the_same_version_is_refused() -> None:
    report = check_upgrade(spec(3, entities=ENTITIES), spec(3, entities=ENTITIES[:1]))
    assert not report.ok
    assert report.errors == ["New version (3) must be greater than current version (3)"]
    assert report.warnings == []  # the reference returns at the first error


def test_going_back_a_version_is_refused() -> None:
    report = check_upgrade(spec(5), spec(4, roomId="room-test-2"))
    assert report.errors == ["New version (4) must be greater than current version (5)"]


def test_the_room_id_cannot_change() -> None:
    report = check_upgrade(spec(1, entities=ENTITIES), spec(2, roomId="room-test-2"))
    assert report.errors == ["RoomId cannot be changed"]
    assert report.warnings == []


def test_removals_are_warnings_in_current_spec_order() -> None:
    report = check_upgrade(
        spec(1, entities=ENTITIES, artifacts=ARTIFACTS),
        spec(2, entities=ENTITIES[1:2], artifacts=ARTIFACTS[1:2]),
    )
    assert report.ok
    assert report.warnings == [
        "Entities will be removed: E-a1, E-h1",
        "Artifacts will be removed: plan, notes",
    ]


def test_a_plain_upgrade_has_nothing_to_say() -> None:
    report = check_upgrade(spec(1, entities=ENTITIES[:1]), spec(2, entities=ENTITIES))
    assert report.ok
    assert (report.errors, report.warnings) == ([], [])
