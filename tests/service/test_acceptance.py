"""The version rule every path goes through (`/apply`, `roomop up`, restore), judged without servers."""

from __future__ import annotations

import pytest

from roomoperator.model.audit import utcnow
from roomoperator.model.codes import ApiCode
from roomoperator.service.acceptance import Content, Offer, Refused, judge
from roomoperator.spec.loading import load_data
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.upgrade import UpgradeRule
from roomoperator.store import SpecVersion
from tests.service.conftest import EXAMPLES, room_spec


def spec(version: int, *, entities: int = 2) -> RoomSpec:
    return load_data(
        room_spec("room-lab-01", version=version, entities=entities), source="<test>", base_dir=EXAMPLES
    )


def offer(
    version: int, *, entities: int = 2, actor: str = "api", force: bool = False, keep_stored: bool = False
) -> Offer:
    content = Content(f"digest-{version}-{entities}", {})
    return Offer(
        spec(version, entities=entities), EXAMPLES, content, actor=actor, force=force, keep_stored=keep_stored
    )


def latest(version: int, *, entities: int = 2, revision: int = 3, actor: str = "api") -> SpecVersion:
    return SpecVersion(
        room_id="room-lab-01",
        revision=revision,
        spec_version=version,
        spec=spec(version, entities=entities).to_wire(),
        actor=actor,
        correlation_id="c",
        diff=None,
        applied_at=utcnow(),
        digest=f"digest-{version}-{entities}",
    )


def refusal(offered: Offer, base: SpecVersion, *, rule: UpgradeRule = "lenient") -> Refused:
    with pytest.raises(Refused) as refused:
        judge(offered, base, rule=rule)
    return refused.value


def test_a_room_without_revisions_takes_any_spec() -> None:
    verdict = judge(offer(1), None, rule="lenient")
    assert (verdict.unchanged, verdict.revision, verdict.warnings) == (False, None, [])


def test_identical_content_is_unchanged_and_keeps_the_revision() -> None:
    verdict = judge(offer(6, entities=3), latest(6, entities=3), rule="strict")
    assert (verdict.unchanged, verdict.revision) == (True, 3)


def test_same_version_with_changed_content_is_a_new_revision_with_a_warning() -> None:
    verdict = judge(offer(6, entities=2), latest(6, entities=3), rule="lenient")
    assert not verdict.unchanged
    assert verdict.warnings == [
        "Version 6 is unchanged but the spec changed: accepted as a new revision",
        "Entities will be removed: E-agent-2",
    ]


def test_a_lower_version_is_refused_unless_forced_or_restored() -> None:
    refused = refusal(offer(4), latest(6))
    assert refused.code is ApiCode.SPEC_VERSION_REGRESSION
    assert (refused.offered, refused.desired, refused.revision) == (4, 6, 3)
    assert "New version (4) is lower than current version (6)" in refused.errors[0]
    assert judge(offer(4, force=True), latest(6), rule="lenient").warnings == [
        "Forced: version 4 replaces the higher version 6"
    ]
    restored = Offer(spec(4), EXAMPLES, Content("d", {}), restored_from=1)
    assert judge(restored, latest(6), rule="strict").revision is None


def test_strict_keeps_the_reference_rule() -> None:
    for offered in (offer(4), offer(6, entities=3)):
        refused = refusal(offered, latest(6), rule="strict")
        assert refused.code is ApiCode.SPEC_UPGRADE_REJECTED
        assert refused.errors[0].startswith(f"New version ({offered.spec.metadata.version}) must be greater")
    assert judge(offer(7), latest(6), rule="strict").warnings == []


def test_roomop_up_keeps_a_revision_made_through_another_path() -> None:
    kept = refusal(offer(6, entities=3, actor="roomop up", keep_stored=True), latest(6, actor="api"))
    assert (kept.code, kept.actor, kept.revision) == (ApiCode.SPEC_KEPT, "api", 3)
    own = latest(6, actor="roomop up")
    assert judge(offer(6, entities=3, actor="roomop up", keep_stored=True), own, rule="lenient").warnings
    newer = offer(7, actor="roomop up", keep_stored=True)
    assert judge(newer, latest(6, actor="api"), rule="lenient").warnings == []
